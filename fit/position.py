"""Position bias: utilities plus one shift β for the outcome listed first, with an interval.

Model, on ordered presentations (first-listed f, second-listed s):

    Thurstonian:    P(f chosen) = Φ((μ_f − μ_s + β) / √(σ_f² + σ_s² + ε))
    Bradley–Terry:  P(f chosen) = sigmoid(θ_f − θ_s + β)

β > 0 means the first-listed option is favoured. It is fitted jointly with the utilities on
:class:`~fit.stats.OrientedStats` (same loss, gauge and optimiser as the plain estimators) and is
reported on the scale of the returned ``mu`` (utility sd units): β_rep = β / sd(μ), the same
normalisation the utilities get, so Φ((μ_f − μ_s + β_rep)/√(σ_f² + σ_s² + ε)) holds with the
reported values.

Interval (95 % by default), from the curvature of the log-likelihood at the optimum
(:mod:`fit.intervals`): ``"sandwich"`` (default; cluster-robust, both orders of a pair form one
cluster) or ``"hessian"`` (each row one Bernoulli observation). The delta method carries the
variance to β / sd(μ), so the uncertainty of sd(μ) is included. Up to a few thousand outcomes the
Hessian is formed densely; above, H⁻¹a comes from conjugate gradients on analytic
Hessian–vector products (O(pairs) each), so it works for 100,000 outcomes.
The interval is β_rep ± z·se with z the normal quantile.

β in noise units (``tie``, :func:`fit.intervals.tie_shift`) is reported alongside: P(first
chosen) between two outcomes of equal utility and average noise is Φ(tie) (sigmoid for
Bradley–Terry). Under the active design it stays calibrated where β_rep does not, because β_rep
inherits the design's bias in the ratio of noise to utility spread (docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtr

from fit._engine import fit_blocks
from fit.intervals import StandardErrors, standard_errors, z_value
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
    tie: float = float("nan")
    """β in noise units (:func:`fit.intervals.tie_shift`): the probit (logit for Bradley–Terry)
    of P(first-listed chosen) between two outcomes of equal utility and average noise."""
    tie_se: float = float("nan")
    """Standard error of ``tie``."""

    def _link(self, v: float) -> float:
        return float(expit(v) if self.fit.estimator == BRADLEY_TERRY else ndtr(v))

    @property
    def first_at_tie(self) -> float:
        """P(first-listed chosen) between two outcomes of equal utility and average noise."""
        return self._link(self.tie)

    @property
    def first_at_tie_interval(self) -> tuple[float, float]:
        """(lo, hi) of ``first_at_tie`` at ``level``: ``tie ± z·se`` through the link."""
        z = z_value(self.level)
        return self._link(self.tie - z * self.tie_se), self._link(self.tie + z * self.tie_se)


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
    errors = standard_errors(
        sol.x, pr, position_clusters(oriented), oriented_total(oriented), interval
    )
    return position_fit(results[0], betas[0], errors, level, interval)


def position_fit(
    result: FitResult, beta: float, errors: StandardErrors, level: float, interval: str
) -> PositionFit:
    """A :class:`PositionFit` from a fit's β̃ and its standard errors."""
    nan = float("nan")
    se = float(errors.beta_se) if errors.beta_se is not None else nan
    z = z_value(level)
    tie = float(errors.tie) if errors.tie is not None else nan
    tie_se = float(errors.tie_se) if errors.tie_se is not None else nan
    return PositionFit(result, beta, se, beta - z * se, beta + z * se, level, interval, tie, tie_se)


def position_clusters(oriented: OrientedStats) -> npt.NDArray[np.int64]:
    """The unordered pair of each record with positive weight: both orders form one cluster."""
    keep = oriented.n > 0
    f, s = oriented.first[keep], oriented.second[keep]
    return pair_keys(np.minimum(f, s), np.maximum(f, s), oriented.n_outcomes)


def oriented_total(oriented: OrientedStats) -> float:
    """Number of rows Σ n."""
    return float(oriented.n.sum())


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
