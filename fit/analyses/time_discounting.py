"""Time discounting: how a model trades money now against more money later.

The model compares "$B now" (B = $1,000 by default) with "$X in t months" over a grid of
delays t and amounts X (``elicit.generators.time_discounting_pairs``). For each delay the
indifference amount X*(t) is where P(later ≻ now) crosses ½, found by linear interpolation in
ln X between the two grid amounts around the first upward crossing. The indifference multiplier
is m*(t) = X*(t) / B and the discount factor D(t) = 1 / m*(t). A delay whose probabilities never
cross ½ on the grid gets NaN and a status saying on which side it stayed.

Two one-parameter curves are fitted to D(t) by least squares,

    exponential  D(t) = exp(−k·t),        hyperbolic  D(t) = 1 / (1 + k·t),   k >= 0,

and the one with the smaller root-mean-square error is reported as the better fit.
:func:`intervals` adds a bootstrap over the bracketed delays: intervals of both rates and of
the error difference RMSE(exponential) − RMSE(hyperbolic); the choice is *supported* only when
that interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    as_float,
    new_figure,
    same_length,
    save_figure,
)

_K_MAX = 20.0  # per month; beyond this D(1) < 1e-8 for both curves


def exponential_curve(t: npt.ArrayLike, k: float) -> FloatArray:
    """D(t) = exp(−k·t)."""
    return np.exp(-k * np.asarray(t, dtype=np.float64))


def hyperbolic_curve(t: npt.ArrayLike, k: float) -> FloatArray:
    """D(t) = 1 / (1 + k·t)."""
    return 1.0 / (1.0 + k * np.asarray(t, dtype=np.float64))


@dataclass(frozen=True)
class DiscountingResult:
    """Indifference points per delay and the two fitted discount curves."""

    delays: FloatArray
    """Delays t (months), sorted, shape (T,)."""
    indifference_amount: FloatArray
    """X*(t) where P(later ≻ now) = ½, in dollars; NaN where not bracketed, shape (T,)."""
    multiplier: FloatArray
    """m*(t) = X*(t) / base_amount, shape (T,)."""
    discount: FloatArray
    """D(t) = 1 / m*(t), shape (T,)."""
    status: tuple[str, ...]
    """Per delay: ``ok``; ``always_later`` (P >= ½ already at the smallest amount: m* is below
    the grid); ``never_later`` (P < ½ even at the largest amount: m* is above the grid)."""
    k_exponential: float
    """Fitted rate k of exp(−k·t), per month (NaN with fewer than 2 usable delays)."""
    k_hyperbolic: float
    """Fitted rate k of 1 / (1 + k·t), per month."""
    rmse_exponential: float
    """Root-mean-square error of the exponential fit on D(t)."""
    rmse_hyperbolic: float
    """Root-mean-square error of the hyperbolic fit on D(t)."""
    better: str
    """``exponential`` or ``hyperbolic`` (smaller RMSE), or ``undetermined``."""
    base_amount: float
    """The immediate amount B."""


def _crossing(log_x: FloatArray, p: FloatArray) -> tuple[float, str]:
    above = np.flatnonzero(p >= 0.5)
    if not len(above):
        return float("nan"), "never_later"
    k = int(above[0])
    if k == 0:
        return float("nan"), "always_later"
    frac = (0.5 - p[k - 1]) / (p[k] - p[k - 1])
    return float(log_x[k - 1] + frac * (log_x[k] - log_x[k - 1])), "ok"


def _fit_rate(
    t: FloatArray, d: FloatArray, curve: Callable[[npt.ArrayLike, float], FloatArray]
) -> tuple[float, float]:
    """Least-squares k in [0, _K_MAX]: a log grid, then bounded Brent around the best point."""
    from scipy.optimize import minimize_scalar

    def sse(k: float) -> float:
        return float(np.sum((curve(t, k) - d) ** 2))

    grid = np.concatenate([[0.0], np.geomspace(1e-6, _K_MAX, 161)])
    losses = np.array([sse(k) for k in grid])
    best = int(np.argmin(losses))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    k = float(grid[best])
    if hi > lo:
        res = minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        if res.fun <= losses[best]:
            k = float(res.x)
    return k, float(np.sqrt(sse(k) / len(t)))


def time_discounting(
    delay: npt.ArrayLike,
    amount: npt.ArrayLike,
    p_later: npt.ArrayLike,
    *,
    base_amount: float = 1000.0,
) -> DiscountingResult:
    """Indifference multipliers per delay and exponential vs hyperbolic discount fits.

    Args:
        delay: delay t in months of the later option, per pair, shape (P,).
        amount: amount X of the later option in dollars, per pair, shape (P,).
        p_later: P(later ≻ now) per pair (both orientations folded), shape (P,); NaN rows are
            ignored; repeated (t, X) rows are averaged.
        base_amount: the immediate amount B.
    """
    t = as_float("delay", delay)
    x = as_float("amount", amount)
    p = as_float("p_later", p_later)
    same_length(delay=t, amount=x, p_later=p)
    ok = np.isfinite(t) & np.isfinite(x) & np.isfinite(p)
    t, x, p = t[ok], x[ok], p[ok]
    if not len(p):
        raise AnalysisInputError("time_discounting: no pair has a measured probability")
    if np.any(x <= 0) or np.any(t < 0) or base_amount <= 0:
        raise AnalysisInputError("time_discounting: amounts must be > 0 and delays >= 0")
    delays, t_code = np.unique(t, return_inverse=True)
    amounts, x_code = np.unique(x, return_inverse=True)
    # A (delay × amount) table of mean probabilities; NaN where a cell was not asked.
    cells = t_code * len(amounts) + x_code
    size = len(delays) * len(amounts)
    total = np.bincount(cells, p, minlength=size)
    count = np.bincount(cells, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = (total / count).reshape(len(delays), len(amounts))
    log_amounts = np.log(amounts)
    x_star = np.full(len(delays), np.nan)
    status = []
    for row in range(len(delays)):
        asked = np.isfinite(table[row])
        log_x, st = _crossing(log_amounts[asked], table[row][asked])
        x_star[row] = np.exp(log_x)
        status.append(st)
    multiplier = x_star / base_amount
    discount = 1.0 / multiplier
    usable = np.isfinite(discount)
    k_e = k_h = rmse_e = rmse_h = float("nan")
    better = "undetermined"
    if usable.sum() >= 2:
        k_e, rmse_e = _fit_rate(delays[usable], discount[usable], exponential_curve)
        k_h, rmse_h = _fit_rate(delays[usable], discount[usable], hyperbolic_curve)
        better = "hyperbolic" if rmse_h < rmse_e else "exponential"
    return DiscountingResult(
        delays=delays,
        indifference_amount=x_star,
        multiplier=multiplier,
        discount=discount,
        status=tuple(status),
        k_exponential=k_e,
        k_hyperbolic=k_h,
        rmse_exponential=rmse_e,
        rmse_hyperbolic=rmse_h,
        better=better,
        base_amount=float(base_amount),
    )


def intervals(
    result: DiscountingResult, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95 % bootstrap-over-delays intervals of ``k_exponential``, ``k_hyperbolic`` and
    ``rmse_difference`` (exponential − hyperbolic; > 0 favours hyperbolic).

    Every replicate refits both curves at once: a 400-point log grid of k, then three rounds of
    a 41-point grid between the neighbours of each replicate's best point. NaN with fewer than
    3 bracketed delays.
    """
    from fit.analyses.intervals import NAN_INTERVAL, percentile, resample

    names = ("k_exponential", "k_hyperbolic", "rmse_difference")
    ok = np.isfinite(result.discount)
    t, d = result.delays[ok], result.discount[ok]
    n = len(t)
    if n < 3:
        return dict.fromkeys(names, NAN_INTERVAL)
    idx = resample(n, n_boot, seed)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    grid = np.concatenate([[0.0], np.geomspace(1e-6, _K_MAX, 399)])
    out: dict[str, tuple[float, float]] = {}
    rmse = {}
    rows = np.arange(n_boot)[:, None]
    for name, exponential in (("k_exponential", True), ("k_hyperbolic", False)):

        def sse_at(k: FloatArray, exponential: bool = exponential) -> FloatArray:
            kt = k[..., None] * t  # (B, G, n)
            curve = np.exp(-kt) if exponential else 1.0 / (1.0 + kt)
            return np.einsum("bn,bgn->bg", counts, (curve - d) ** 2)

        shared = np.exp(-np.outer(grid, t)) if exponential else 1.0 / (1.0 + np.outer(grid, t))
        ks = np.broadcast_to(grid, (n_boot, len(grid)))
        sse = counts @ ((shared - d) ** 2).T  # (B, G): one grid for every replicate
        for _ in range(3):  # zoom in around each replicate's best point: 4 % → 0.01 % steps
            best = np.argmin(sse, axis=1)
            lo = ks[rows[:, 0], np.maximum(best - 1, 0)]
            hi = ks[rows[:, 0], np.minimum(best + 1, ks.shape[1] - 1)]
            ks = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 41)[None, :]
            sse = sse_at(ks)
        best = np.argmin(sse, axis=1)
        out[name] = percentile(ks[rows[:, 0], best])
        rmse[name] = np.sqrt(sse[rows[:, 0], best] / n)
    out["rmse_difference"] = percentile(rmse["k_exponential"] - rmse["k_hyperbolic"])
    return out


def amount_monotonicity(
    delay: npt.ArrayLike, amount: npt.ArrayLike, p_later: npt.ArrayLike, *, seed: int = 0
) -> tuple[Any, Any]:
    """The two ladders of the grid: P(later) should rise with the amount at each delay, and
    fall with the delay at each amount (:func:`fit.analyses.diagnostics.monotonicity`)."""
    from fit.analyses.diagnostics import monotonicity

    t = as_float("delay", delay)
    x = as_float("amount", amount)
    p = as_float("p_later", p_later)
    by_amount = monotonicity(t, x, p, increasing=True, seed=seed)
    by_delay = monotonicity(x, t, p, increasing=False, seed=seed)
    return by_amount, by_delay


def plot_time_discounting(result: DiscountingResult, path: str | Path) -> Path:
    """D(t) per delay with the fitted exponential and hyperbolic curves."""
    fig = new_figure()
    ax = fig.add_subplot()
    ok = np.isfinite(result.discount)
    ax.scatter(result.delays[ok], result.discount[ok], color="black", zorder=3, label="D(t) = 1/m*")
    grid = np.linspace(0.0, float(result.delays.max()), 200)
    if np.isfinite(result.k_exponential):
        ax.plot(
            grid,
            exponential_curve(grid, result.k_exponential),
            label=f"exp(−kt), k = {result.k_exponential:.3g}, RMSE {result.rmse_exponential:.3g}",
        )
        ax.plot(
            grid,
            hyperbolic_curve(grid, result.k_hyperbolic),
            label=f"1/(1+kt), k = {result.k_hyperbolic:.3g}, RMSE {result.rmse_hyperbolic:.3g}",
        )
    ax.set_xlabel("delay t (months)")
    ax.set_ylabel("discount factor D(t)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Time discounting: {result.better} fits better")
    ax.legend()
    return save_figure(fig, path)
