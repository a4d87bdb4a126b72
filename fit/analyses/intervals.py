"""95 % intervals for the headline numbers of the analyses.

Three kinds, chosen per statistic (docs/analyses.md, "Intervals", lists which one each column
uses):

- **analytic** where it is exact or standard: Wilson for shares (k of n independent items),
  Fisher's z for Pearson correlations (the Bonett–Wright variance for Spearman's ρ), Student's t
  for a least-squares slope;
- **bootstrap over items** (lotteries, processes, questions, delays): resample the items with
  replacement and recompute the statistic for every replicate at once;
- **bootstrap over outcomes** for statistics of pairs or triads, which share outcomes and are
  therefore not independent: draw multinomial outcome counts ``c`` (B, N) and weight each pair
  or triad by the product of its outcomes' counts — the pairs/triads among a resampled outcome
  set, without refitting anything.

Every interval is a percentile interval of ``n_boot`` replicates (NaN replicates ignored; NaN
when fewer than half are finite) or a closed form; all are vectorised over replicates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from fit.analyses._common import FloatArray, IntArray

LEVEL = 0.95
"""Coverage of every interval the analyses store (``<name>_lo`` / ``<name>_hi``)."""
N_BOOT = 1000
"""Bootstrap replicates."""

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (float("nan"), float("nan"))


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard-normal quantile of ``level`` (1.96 for 95 %)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k: float, n: float, level: float = LEVEL) -> Interval:
    """Wilson score interval of a share ``k / n`` (NaN when n = 0)."""
    if n <= 0:
        return NAN_INTERVAL
    z = z_value(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def fisher(r: float, n: int, level: float = LEVEL, *, rank: bool = False) -> Interval:
    """Interval of a correlation from Fisher's z: se 1/√(n−3) for Pearson, √((1+ρ²/2)/(n−3))
    for Spearman (``rank``, Bonett & Wright 2000). NaN with n ≤ 3 or a NaN estimate."""
    if n <= 3 or not np.isfinite(r):
        return NAN_INTERVAL
    rr = float(np.clip(r, -0.999999, 0.999999))
    se = np.sqrt((1 + rr * rr / 2) / (n - 3)) if rank else 1 / np.sqrt(n - 3)
    z = np.arctanh(rr)
    h = z_value(level) * se
    return float(np.tanh(z - h)), float(np.tanh(z + h))


def slope_interval(x: npt.ArrayLike, y: npt.ArrayLike, level: float = LEVEL) -> Interval:
    """Student-t interval of the least-squares slope of y on x (NaN with < 3 points)."""
    from scipy.stats import t as student

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    n = len(a)
    sxx = float(((a - a.mean()) ** 2).sum())
    if n < 3 or sxx <= 0:
        return NAN_INTERVAL
    slope = float(((a - a.mean()) * (b - b.mean())).sum() / sxx)
    resid = b - b.mean() - slope * (a - a.mean())
    se = np.sqrt(float(resid @ resid) / (n - 2) / sxx)
    h = float(student.ppf(0.5 + level / 2, n - 2)) * se
    return slope - h, slope + h


def percentile(reps: npt.ArrayLike, level: float = LEVEL) -> Interval:
    """Percentile interval of bootstrap replicates (NaN when fewer than half are finite)."""
    r = np.asarray(reps, dtype=np.float64).ravel()
    ok = r[np.isfinite(r)]
    if ok.size < max(2, r.size // 2):
        return NAN_INTERVAL
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def resample(n: int, n_boot: int = N_BOOT, seed: int = 0) -> IntArray:
    """Bootstrap indices, shape (n_boot, n)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n)).astype(np.int64)


def item_interval(
    stat: Callable[[IntArray], npt.ArrayLike],
    n_items: int,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """Bootstrap over independent items: ``stat(idx)`` maps indices (B, n) to B replicates."""
    if n_items < 2:
        return NAN_INTERVAL
    return percentile(stat(resample(n_items, n_boot, seed)), level)


def mean_interval(
    values: npt.ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Interval:
    """Bootstrap interval of the mean of independent values (NaN values dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return item_interval(
        lambda idx: v[idx].mean(axis=1), len(v), n_boot=n_boot, seed=seed, level=level
    )


def outcome_weights(
    members: npt.ArrayLike, n_outcomes: int, *, n_boot: int = N_BOOT, seed: int = 0
) -> FloatArray:
    """Bootstrap-over-outcomes weights of items made of outcomes (pairs, triads).

    Args:
        members: outcome indices of each item, shape (T, m) (m = 2 for pairs, 3 for triads).
        n_outcomes: N, the outcomes the items are drawn from.

    Returns:
        (n_boot, T): the product of the multinomial counts of each item's outcomes in each
        replicate (0 when one of them was not drawn).
    """
    m = np.asarray(members, dtype=np.int64)
    counts = (
        np.random.default_rng(seed)
        .multinomial(n_outcomes, np.full(n_outcomes, 1.0 / n_outcomes), size=n_boot)
        .astype(np.float64)
    )
    w = np.ones((n_boot, len(m)))
    for k in range(m.shape[1]):  # m is 2 or 3: a loop over columns, not over items
        w *= counts[:, m[:, k]]
    return w


def pair_members(first: list[str], second: list[str]) -> tuple[IntArray, int]:
    """Index pairs (m, 2) of two id lists over their sorted union, and the union's size."""
    ids = sorted(set(first) | set(second))
    index = {o: k for k, o in enumerate(ids)}
    members = np.array(
        [[index[a], index[b]] for a, b in zip(first, second, strict=True)], dtype=np.int64
    ).reshape(-1, 2)
    return members, len(ids)


def weighted_mean_interval(
    values: npt.ArrayLike, weights: FloatArray, level: float = LEVEL
) -> Interval:
    """Percentile interval of Σ w·x / Σ w over the replicates (rows) of ``weights``."""
    x = np.asarray(values, dtype=np.float64)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (weights @ np.nan_to_num(x)) / total
    reps[total <= 0] = np.nan
    return percentile(reps, level)


def outcome_mean_interval(
    values: npt.ArrayLike,
    members: npt.ArrayLike,
    n_outcomes: int,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """Bootstrap over outcomes of the mean of a per-pair or per-triad value."""
    m = np.asarray(members, dtype=np.int64)
    if len(m) < 2 or n_outcomes < 3:
        return NAN_INTERVAL
    return weighted_mean_interval(
        values, outcome_weights(m, n_outcomes, n_boot=n_boot, seed=seed), level
    )


def column_interval(
    stat: Callable[[FloatArray], npt.ArrayLike],
    matrix: npt.ArrayLike,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """Bootstrap over outcomes (columns) of a statistic of an agents × outcomes matrix.

    ``stat`` receives the resampled matrices stacked as (B, A, K) and returns B replicates.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[1] < 3:
        return NAN_INTERVAL
    idx = resample(m.shape[1], n_boot, seed)
    return percentile(stat(np.moveaxis(m[:, idx], 1, 0)), level)


def batched_correlation(stack: FloatArray, *, centre: bool = True) -> FloatArray:
    """Row-by-row Pearson correlation (cosine when not ``centre``) of (B, A, K) → (B, A, A)."""
    s = stack - stack.mean(axis=2, keepdims=True) if centre else stack
    norm = np.linalg.norm(s, axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = s / norm
    return np.clip(np.einsum("bik,bjk->bij", unit, unit), -1.0, 1.0)


def with_intervals(row: Mapping[str, Any], intervals: Mapping[str, Interval]) -> dict[str, Any]:
    """``row`` with ``<name>_lo`` / ``<name>_hi`` right after each estimate ``name`` (None for
    NaN); an interval whose estimate is not in the row is appended at the end."""
    out: dict[str, Any] = {}

    def put(name: str) -> None:
        lo, hi = intervals[name]
        out[f"{name}_lo"] = float(lo) if np.isfinite(lo) else None
        out[f"{name}_hi"] = float(hi) if np.isfinite(hi) else None

    for key, value in row.items():
        out[key] = value
        if key in intervals:
            put(key)
    for name in intervals:
        if name not in row:
            put(name)
    return out


def similarity_replicates(
    matrix: npt.ArrayLike, *, rank: bool = False, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Bootstrap over outcomes (columns) of the agents' similarity matrices.

    Returns:
        (Pearson — Spearman when ``rank`` — and cosine replicates, each (B, A, A)).
    """
    from fit.analyses._common import rankdata

    m = np.asarray(matrix, dtype=np.float64)
    idx = resample(m.shape[1], n_boot, seed)
    stack = np.moveaxis(m[:, idx], 1, 0)  # (B, A, K)
    corr = batched_correlation(rankdata(stack) if rank else stack, centre=True)
    return corr, batched_correlation(stack, centre=False)


def mean_off_diagonal_interval(reps: FloatArray, level: float = LEVEL) -> Interval:
    """Interval of the mean off-diagonal similarity from (B, A, A) replicates."""
    a = reps.shape[1]
    off = reps[:, ~np.eye(a, dtype=bool)]
    finite = np.isfinite(off)
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.where(finite, off, 0.0).sum(axis=1) / finite.sum(axis=1)
    return percentile(vals, level)


def row_off_diagonal_interval(reps: FloatArray, k: int, level: float = LEVEL) -> Interval:
    """Interval of agent ``k``'s mean similarity to the others from (B, A, A) replicates."""
    others = np.delete(reps[:, k, :], k, axis=1)
    finite = np.isfinite(others)
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.where(finite, others, 0.0).sum(axis=1) / finite.sum(axis=1)
    return percentile(vals, level)
