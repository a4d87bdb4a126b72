"""Bradley–Terry utilities: one score per outcome, logistic link.

Model. P(i ≻ j) = sigmoid(θᵢ − θⱼ) = 1 / (1 + exp(−(θᵢ − θⱼ))).

Loss. Weighted mean binary cross-entropy against the soft labels, as for the Thurstonian model:
L = Σₖ nₖ [softplus(dₖ) − pₖ dₖ] / Σₖ nₖ with dₖ = θᵢ − θⱼ, gradient dL/ddₖ ∝ sigmoid(dₖ) − pₖ.
Optional ridge l2/2 · Σ θᵢ² added to the summed negative log-likelihood, so l2 counts
pseudo-observations (off by default; needed only for separable data).

Identifiability. Only differences matter: mean θ = 0 is fixed by a penalty that vanishes there.
The logistic scale is identified, so results report μ = θ / sd(θ) (mean 0, sd 1) and keep
``scale`` = sd(θ): P(i ≻ j) = sigmoid(scale · (μᵢ − μⱼ)). ``sigma2`` is None.

Optimiser: scipy L-BFGS-B with the analytic gradient; batched fits stack models block-diagonally.
"""

from __future__ import annotations

from collections.abc import Sequence

from fit._engine import fit_blocks
from fit.result import BRADLEY_TERRY, FitResult
from fit.stats import PairStats

__all__ = ["fit_bradley_terry", "fit_bradley_terry_batch"]


def fit_bradley_terry_batch(
    stats: Sequence[PairStats],
    *,
    l2: float = 0.0,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    allow_unobserved: bool = False,
    check_connected: bool = True,
    init: FitResult | Sequence[FitResult | None] | None = None,
) -> list[FitResult]:
    """Fit Bradley–Terry scores for many models in one L-BFGS run.

    Args:
        stats: one :class:`~fit.stats.PairStats` per model.
        l2: ridge on θ (logits) in pseudo-observations; 0 is plain maximum likelihood.
        max_iter: L-BFGS iteration limit.
        gtol: stop when every gradient component (of N · mean loss) is below this.
        ftol: stop when the relative decrease of the objective falls below this.
        allow_unobserved: outcomes in no pair get mu = 0 and ``observed`` False instead of an
            error.
        check_connected: warn when a comparison graph has several components.
        init: warm start (one result for all models, or one per model).

    Returns:
        One :class:`~fit.result.FitResult` per model with sigma2 = None.
    """
    results, _, _, _ = fit_blocks(
        stats,
        link="logit",
        hetero=False,
        position=False,
        estimator=BRADLEY_TERRY,
        eps=0.0,
        l2=l2,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=check_connected,
        init=init,
    )
    return results


def fit_bradley_terry(
    stats: PairStats,
    *,
    l2: float = 0.0,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    allow_unobserved: bool = False,
    check_connected: bool = True,
    init: FitResult | None = None,
) -> FitResult:
    """Fit P(i ≻ j) = sigmoid(θᵢ − θⱼ) to one model's pairs.

    Args:
        stats: unordered-pair statistics (N outcomes).
        (others as :func:`fit_bradley_terry_batch`)

    Returns:
        mu (N,) = θ normalised to mean 0 / sd 1, scale = sd(θ) in logits, sigma2 None.
    """
    return fit_bradley_terry_batch(
        [stats],
        l2=l2,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=check_connected,
        init=init,
    )[0]
