"""Position bias: utilities plus one shift β for the outcome listed first, with an interval.

Model, on ordered presentations (first-listed f, second-listed s):

    Thurstonian:    P(f chosen) = Φ((μ_f − μ_s + β) / √(σ_f² + σ_s² + ε))
    Bradley–Terry:  P(f chosen) = sigmoid(θ_f − θ_s + β)

β > 0 means the first-listed option is favoured. It is fitted jointly with the utilities on
:class:`~fit.stats.OrientedStats` (same loss, gauge and optimiser as the plain estimators) and is
reported on the scale of the returned ``mu`` (utility sd units): β_rep = β / sd(μ), the same
normalisation the utilities get, so Φ((μ_f − μ_s + β_rep)/√(σ_f² + σ_s² + ε)) holds with the
reported values.

Interval (95 % by default), from the curvature of the log-likelihood at the optimum:

- ``"sandwich"`` (default): cluster-robust variance H⁻¹ J H⁻¹ with J the outer product of score
  contributions summed per unordered pair (both orders of a pair form one cluster), times
  C/(C − 1) for C clusters. It stays honest when the labels are probabilities rather than coin
  flips, or when β varies from pair to pair.
- ``"hessian"``: the observed Fisher information of the rows, H⁻¹, treating each row as one
  Bernoulli observation with its soft label.

Both use the delta method for β_rep = β / sd(μ): var = aᵀ H⁻¹ (J H⁻¹) a with a = ∇β_rep, so the
uncertainty of sd(μ) is included. H⁻¹a is found by conjugate gradients on Hessian–vector products
(central differences of the analytic gradient): O(pairs) per product, no dense Hessian, so it
works for 100,000 outcomes. The interval is β_rep ± z·se with z the normal quantile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.sparse.linalg import LinearOperator, cg
from scipy.special import expit, ndtr, ndtri

from fit._core import Problem, split, terms, value_grad
from fit._engine import fit_blocks
from fit.result import BRADLEY_TERRY, THURSTONIAN, FitResult, predict_logit_or_z
from fit.stats import OrientedStats, pair_keys

Interval = Literal["sandwich", "hessian"]


@dataclass(frozen=True)
class PositionFit:
    """Utilities fitted with a first-position shift β, and β's interval."""

    fit: FitResult
    """The utilities (normalised as usual); ``fit.loss`` is the loss on the oriented data."""
    beta: float
    """First-position shift on the scale of ``fit.mu`` (> 0: first-listed favoured)."""
    beta_se: float
    """Standard error of ``beta``."""
    beta_lo: float
    """Lower end of the interval for ``beta``."""
    beta_hi: float
    """Upper end of the interval for ``beta``."""
    level: float
    """Coverage of the interval, e.g. 0.95."""
    interval: str
    """How the interval was computed: ``sandwich`` or ``hessian`` (module docstring)."""


def _hvp(x: np.ndarray, pr: Problem) -> LinearOperator:
    h = 1e-5 * max(1.0, float(np.abs(x).max()))

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.ravel(v)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            return np.zeros_like(v)
        step = (h / norm) * v
        return (value_grad(x + step, pr)[1] - value_grad(x - step, pr)[1]) * (norm / (2 * h))

    return LinearOperator((len(x), len(x)), matvec=matvec, dtype=np.float64)


def _beta_variance(
    x: np.ndarray, pr: Problem, total: float, clusters: np.ndarray, method: Interval
) -> float:
    """Delta-method variance of β / sd(μ) for a single-block position problem."""
    n = pr.n_outcomes
    mu, t, beta = split(x, pr)
    assert beta is not None
    centred = mu - mu.mean()
    sd = float(np.sqrt(np.mean(centred**2)))
    if not sd > 1e-12:
        return float("nan")  # all utilities equal: β / sd(μ) is undefined
    a = np.zeros_like(x)  # ∇(β / sd(μ))
    a[-1] = 1.0 / sd
    a[:n] = -float(beta[0]) * centred / (n * sd**3)
    u, _ = cg(_hvp(x, pr), a, rtol=1e-10, maxiter=20 * len(x))
    # The data term of f is (N/W)·NLL with NLL = Σ nₖℓₖ, so H_NLL⁻¹ a = (N/W) ∇²f⁻¹ a.
    u = u * (n / total)
    if method == "hessian":
        return float(a @ u)
    u_mu, u_t, u_beta = split(u, pr)
    assert u_beta is not None
    q = terms(x, pr)
    along = q["gd"] * (u_mu[pr.a] - u_mu[pr.b] + u_beta[0])  # ∇ℓₖ · u
    if t is not None and u_t is not None:
        along = along + q["gv"] * 2.0 * (t[pr.a] * u_t[pr.a] + t[pr.b] * u_t[pr.b])
    rows = pr.w * (total / n)
    _, inverse = np.unique(clusters, return_inverse=True)
    per_cluster = np.bincount(inverse, rows * along)
    c = len(per_cluster)
    return float(per_cluster @ per_cluster) * c / max(c - 1, 1)


def fit_position(
    oriented: OrientedStats,
    *,
    estimator: Literal["thurstonian", "bradley-terry"] = "thurstonian",
    interval: Interval = "sandwich",
    level: float = 0.95,
    eps: float = 1e-6,
    l2: float = 0.0,
    var_prior: float = 1.0,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    allow_unobserved: bool = False,
    check_connected: bool = True,
    init: FitResult | None = None,
) -> PositionFit:
    """Fit utilities and a first-position shift β to ordered-pair statistics.

    Args:
        oriented: per ordered presentation, count and mean P(first chosen) (N outcomes).
        estimator: ``"thurstonian"`` (heteroscedastic probit) or ``"bradley-terry"`` (logit).
        interval: ``"sandwich"`` (cluster-robust, default) or ``"hessian"`` (module docstring).
        level: coverage of the interval, in (0, 1).
        eps, l2, var_prior, max_iter, gtol, ftol, allow_unobserved, check_connected, init: as for
            :func:`~fit.thurstonian.fit_thurstonian`.

    Returns:
        A :class:`PositionFit`: the utilities (``fit``), β on the ``mu`` scale, its standard
        error and interval.
    """
    if estimator not in (THURSTONIAN, BRADLEY_TERRY):
        raise ValueError(f"estimator must be 'thurstonian' or 'bradley-terry', got {estimator!r}")
    if interval not in ("sandwich", "hessian"):
        raise ValueError(f"interval must be 'sandwich' or 'hessian', got {interval!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    probit = estimator == THURSTONIAN
    results, betas, pr, sol = fit_blocks(
        [oriented],
        link="probit" if probit else "logit",
        hetero=probit,
        position=True,
        estimator=estimator,
        eps=eps if probit else 0.0,
        l2=l2,
        var_prior=var_prior if probit else 0.0,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=check_connected,
        init=init,
    )
    keep = oriented.n > 0
    f, s = oriented.first[keep], oriented.second[keep]
    clusters = pair_keys(np.minimum(f, s), np.maximum(f, s), oriented.n_outcomes)
    var = _beta_variance(sol.x, pr, float(oriented.n.sum()), clusters, interval)
    se = float(np.sqrt(max(var, 0.0)))
    z = float(ndtri(0.5 + level / 2))
    beta = betas[0]
    return PositionFit(results[0], beta, se, beta - z * se, beta + z * se, level, interval)


def predict_first(
    position: PositionFit, first: npt.ArrayLike, second: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Probability that the first-listed outcome is chosen, bias included.

    Args:
        position: a position-bias fit.
        first, second: outcome indices shown first and second, int arrays of one shape.

    Returns:
        P(first chosen) per presentation; 0.5 where either outcome is unobserved.
    """
    z = predict_logit_or_z(position.fit, first, second, offset=position.beta)
    return expit(z) if position.fit.estimator == BRADLEY_TERRY else ndtr(z)
