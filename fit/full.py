"""The whole fit of one model, as ``valuescope fit`` needs it: utilities, their intervals and
(optionally) the position bias β with its interval, from one set of ordered-pair statistics.

One optimiser run gives the point estimates (Newton steps on the analytic Hessian,
:mod:`fit._newton`), and the same Hessian gives every interval (:mod:`fit.intervals`): no
refits, no bootstrap. With ``position_bias`` the utilities and β are fitted jointly on the
ordered presentations; without it, on the order-folded pairs. The result carries the two
timings separately: ``seconds_point`` (statistics → point estimates) and ``seconds_interval``
(the intervals).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fit._engine import fit_blocks
from fit.intervals import METHODS, Method, standard_errors, z_value
from fit.position import PositionFit, oriented_total, position_clusters, position_fit
from fit.result import BRADLEY_TERRY, ESTIMATORS, THURSTONIAN, THURSTONIAN_HOMOSCEDASTIC, FitResult
from fit.stats import OrientedStats, fold
from fit.thurstonian import DEFAULT_EPS, DEFAULT_VAR_PRIOR

FloatArray = np.ndarray
Estimator = Literal["thurstonian", "thurstonian-homoscedastic", "bradley-terry"]


@dataclass(frozen=True)
class FitWithIntervals:
    """Utilities with per-outcome intervals, and β with its interval when fitted."""

    fit: FitResult
    """The utilities (normalised: mean 0, sd 1 over observed outcomes)."""
    mu_se: FloatArray
    """Standard error of each normalised utility, shape (N,); NaN for unobserved outcomes."""
    mu_lo: FloatArray
    """Lower end of each utility's interval, shape (N,); NaN for unobserved outcomes."""
    mu_hi: FloatArray
    """Upper end of each utility's interval, shape (N,); NaN for unobserved outcomes."""
    position: PositionFit | None
    """β on the ``mu`` scale with its interval (None without ``position_bias``)."""
    level: float
    """Coverage of every interval, e.g. 0.95."""
    interval: str
    """``sandwich`` or ``hessian`` (:mod:`fit.intervals`)."""
    exact: bool
    """True when the utilities' intervals used the full covariance (up to a few thousand
    outcomes); False for the per-outcome approximation of :mod:`fit.intervals`."""
    seconds_point: float
    """Wall seconds of the point fit (preparation and optimiser)."""
    seconds_interval: float
    """Wall seconds of the intervals (utilities and β)."""


def fit_with_intervals(
    oriented: OrientedStats,
    *,
    estimator: Estimator = "thurstonian",
    position_bias: bool = True,
    interval: Method = "sandwich",
    level: float = 0.95,
    eps: float = DEFAULT_EPS,
    l2: float = 0.0,
    var_prior: float = DEFAULT_VAR_PRIOR,
    max_iter: int = 2000,
    gtol: float = 1e-6,
    ftol: float = 1e-13,
    allow_unobserved: bool = True,
    check_connected: bool = True,
    init: FitResult | None = None,
) -> FitWithIntervals:
    """Fit one model's utilities (and β) and their intervals from ordered-pair statistics.

    Args:
        oriented: per ordered presentation, row count and mean P(first chosen).
        estimator: ``"thurstonian"`` (heteroscedastic, default), ``"thurstonian-homoscedastic"``
            or ``"bradley-terry"``.
        position_bias: fit a first-position shift β jointly (on the ordered records); else fit
            the order-folded pairs.
        interval: ``"sandwich"`` (cluster-robust, default) or ``"hessian"``.
        level: coverage of the intervals, in (0, 1).
        eps, l2, var_prior, max_iter, gtol, ftol, check_connected, init: as for
            :func:`~fit.thurstonian.fit_thurstonian`.
        allow_unobserved: outcomes in no pair get NaN intervals instead of an error (default
            True, as a run may leave some outcomes unasked).

    Returns:
        A :class:`FitWithIntervals` with ``seconds_point`` and ``seconds_interval``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if interval not in METHODS:
        raise ValueError(f"interval must be 'sandwich' or 'hessian', got {interval!r}")
    z = z_value(level)
    probit = estimator != BRADLEY_TERRY
    if position_bias and estimator == THURSTONIAN_HOMOSCEDASTIC:
        raise ValueError("position_bias needs 'thurstonian' or 'bradley-terry'")
    t0 = time.perf_counter()
    stats = oriented if position_bias else fold(oriented)
    results, betas, pr, sol = fit_blocks(
        [stats],
        link="probit" if probit else "logit",
        hetero=estimator == THURSTONIAN,
        position=position_bias,
        estimator=estimator,
        eps=eps if probit else 0.0,
        l2=l2,
        var_prior=var_prior if estimator == THURSTONIAN else 0.0,
        max_iter=max_iter,
        gtol=gtol,
        ftol=ftol,
        allow_unobserved=allow_unobserved,
        check_connected=check_connected,
        init=init,
    )
    seconds_point = time.perf_counter() - t0
    t1 = time.perf_counter()
    if position_bias:
        clusters = position_clusters(oriented)
    else:
        keep = stats.n > 0
        clusters = np.flatnonzero(keep).astype(np.int64)  # every folded pair its own cluster
    errors = standard_errors(sol.x, pr, clusters, oriented_total(oriented), interval)
    result = results[0]
    observed = result.observed if result.observed is not None else np.ones(result.n_outcomes, bool)
    mu_se = np.full(result.n_outcomes, np.nan)
    mu_se[observed] = errors.mu_se
    mu = np.where(observed, result.mu, np.nan)
    position = None
    if position_bias:
        position = position_fit(result, betas[0], errors, level, interval)
    seconds_interval = time.perf_counter() - t1
    return FitWithIntervals(
        fit=result,
        mu_se=mu_se,
        mu_lo=mu - z * mu_se,
        mu_hi=mu + z * mu_se,
        position=position,
        level=level,
        interval=interval,
        exact=errors.exact,
        seconds_point=seconds_point,
        seconds_interval=seconds_interval,
    )
