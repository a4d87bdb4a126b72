"""How well a fit explains data: accuracy, log-loss, calibration, order consistency, bootstrap
intervals for utilities, and the held-out pair set.

Conventions (docs/methods.md, "Utility models" and "Metrics of a fit"):

- Accuracy thresholds both the prediction and the label at 0.5: a pair counts as correct when
  the model's P(i ≻ j) and the observed mean label fall on the same side of 0.5. Pairs whose
  label is exactly 0.5 say nothing about the winner and are left out; a prediction of exactly 0.5
  (e.g. an unobserved outcome) earns half a point.
- Log-loss is the binary cross-entropy against the soft label.
- Both are per pair (every pair counts once, as in the reference protocol) unless
  ``weighted=True``, which weights pairs by their observation count — the row-level figure,
  equal to the training loss of the fit.
- Metrics belong on real observations only: never pass pseudo-labels (see
  :func:`fit.acquisition.pseudo_labels`) to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import log_expit, log_ndtr

from fit.errors import EmptyDataError, FitError
from fit.result import BRADLEY_TERRY, FitResult, predict_logit_or_z, predict_proba
from fit.stats import OrientedStats, PairStats, pair_keys
from fit.thurstonian import fit_thurstonian_batch

FloatArray = npt.NDArray[np.float64]


def _require(stats: PairStats | OrientedStats, what: str) -> None:
    if stats.n_pairs == 0:
        raise EmptyDataError(f"{what}: no pairs to score")


def _check(result: FitResult, stats: PairStats | OrientedStats) -> None:
    if result.n_outcomes != stats.n_outcomes:
        raise FitError(
            f"fit has {result.n_outcomes} outcomes but the data has {stats.n_outcomes}; "
            "score a fit against data over the same outcome list"
        )


def accuracy(result: FitResult, stats: PairStats, *, weighted: bool = False) -> float:
    """Share of pairs whose predicted winner matches the observed one (module docstring).

    Args:
        result: a fit over the same N outcomes.
        stats: pairs to score (usually the held-out set).
        weighted: weight pairs by their count n instead of counting each once.

    Returns:
        Accuracy in [0, 1]; NaN when every label is exactly 0.5.
    """
    _require(stats, "accuracy")
    _check(result, stats)
    z = predict_logit_or_z(result, stats.i, stats.j)
    decided = stats.p != 0.5
    label = stats.p > 0.5
    credit = np.where(z == 0, 0.5, ((z > 0) == label).astype(np.float64))
    w = (stats.n if weighted else np.ones(stats.n_pairs)) * decided
    total = float(w.sum())
    return float(w @ credit) / total if total > 0 else float("nan")


def log_loss(result: FitResult, stats: PairStats, *, weighted: bool = False) -> float:
    """Mean binary cross-entropy −[p log q + (1 − p) log(1 − q)], q = P(i ≻ j) from the fit.

    Args:
        result: a fit over the same N outcomes.
        stats: pairs to score.
        weighted: weight pairs by their count n (the row-level loss) instead of equally.

    Returns:
        Mean cross-entropy in nats (≥ 0; 0.693 is a coin flip).
    """
    _require(stats, "log_loss")
    _check(result, stats)
    z = predict_logit_or_z(result, stats.i, stats.j)
    if result.estimator == BRADLEY_TERRY:
        lp, lq = log_expit(z), log_expit(-z)
    else:
        lp, lq = log_ndtr(z), log_ndtr(-z)
    loss = -(stats.p * lp + (1.0 - stats.p) * lq)
    w = stats.n if weighted else np.ones(stats.n_pairs)
    return float(w @ loss / w.sum())


def calibration(
    result: FitResult, stats: PairStats, *, bins: int = 10
) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """Reliability table: predictions binned on [0, 1], mean prediction vs mean label per bin.

    Args:
        result: a fit.
        stats: pairs to score; pairs are weighted by n.
        bins: number of equal-width bins.

    Returns:
        (mean prediction, mean label, weight) per bin, each shape (bins,) (NaN for empty bins),
        and the expected calibration error Σ weight·|pred − label| / Σ weight.
    """
    _require(stats, "calibration")
    _check(result, stats)
    q = predict_proba(result, stats.i, stats.j)
    k = np.minimum((q * bins).astype(np.int64), bins - 1)
    weight = np.bincount(k, stats.n, bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.bincount(k, stats.n * q, bins) / weight
        label = np.bincount(k, stats.n * stats.p, bins) / weight
    ok = weight > 0
    ece = float(weight[ok] @ np.abs(pred[ok] - label[ok]) / weight.sum())
    return pred, label, weight, ece


@dataclass(frozen=True)
class OrderConsistency:
    """Agreement between the two presentation orders of the same pairs."""

    agreement: float
    """Share of pairs (asked in both orders) whose two orders pick the same winner."""
    mean_abs_diff: float
    """Mean |P(a ≻ b | a first) − P(a ≻ b | a second)| over those pairs."""
    first_wins_both: float
    """Share of those pairs where the first-listed option wins in both orders."""
    second_wins_both: float
    """Share where the second-listed option wins in both orders."""
    n_pairs: int
    """Number of unordered pairs asked in both orders."""


def order_consistency(oriented: OrientedStats) -> OrderConsistency:
    """Compare each unordered pair's two presentation orders.

    With a = the lower index of a pair, P₁ = P(a ≻ b | a shown first) and
    P₂ = P(a ≻ b | a shown second) = 1 − P(b chosen | b first). The orders agree when P₁ and P₂
    lie on the same side of 0.5 (both exactly 0.5 also agrees). Records of the same ordered
    pair are merged with weights n.

    Args:
        oriented: ordered-pair statistics.

    Returns:
        An :class:`OrderConsistency`; fields are NaN when no pair was asked in both orders.
    """
    f, s, n = oriented.first, oriented.second, oriented.n
    lo_first = f < s
    keys = pair_keys(np.minimum(f, s), np.maximum(f, s), oriented.n_outcomes)
    _, inv = np.unique(keys, return_inverse=True)
    p_lo = np.where(lo_first, oriented.p_first, 1.0 - oriented.p_first)
    w1, w2 = n * lo_first, n * ~lo_first
    n1, n2 = np.bincount(inv, w1), np.bincount(inv, w2)
    both = (n1 > 0) & (n2 > 0)
    if not both.any():
        nan = float("nan")
        return OrderConsistency(nan, nan, nan, nan, 0)
    p1 = np.bincount(inv, w1 * p_lo)[both] / n1[both]
    p2 = np.bincount(inv, w2 * p_lo)[both] / n2[both]
    side1, side2 = np.sign(p1 - 0.5), np.sign(p2 - 0.5)
    return OrderConsistency(
        agreement=float(np.mean(side1 == side2)),
        mean_abs_diff=float(np.mean(np.abs(p1 - p2))),
        first_wins_both=float(np.mean((side1 > 0) & (side2 < 0))),
        second_wins_both=float(np.mean((side1 < 0) & (side2 > 0))),
        n_pairs=int(both.sum()),
    )


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile intervals for the utilities from refits on resampled pairs."""

    mu_lo: FloatArray
    """Lower percentile of mu per outcome, shape (N,)."""
    mu_hi: FloatArray
    """Upper percentile of mu per outcome, shape (N,)."""
    samples: FloatArray
    """mu of every replicate, shape (B, N); NaN where an outcome drew no pair."""
    level: float
    """Coverage of the interval."""


def bootstrap_mu(
    stats: PairStats,
    *,
    n_boot: int = 100,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 1,
    init: FitResult | None = None,
    fit_batch: Callable[..., list[FitResult]] = fit_thurstonian_batch,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Pair bootstrap: resample the m pairs with replacement, refit, take percentiles of mu.

    A replicate multiplies each pair's weight n by how often it was drawn (m draws from a
    seeded ``numpy.random.Generator``). Refits are warm-started from ``init`` (the full-data fit;
    computed if None). ``batch_size`` > 1 stacks that many replicates into one problem: fewer
    Python round trips, but the joint L-BFGS run needs more iterations than each fit alone, so
    1 (the default) is usually fastest on CPU; larger batches pay off on a GPU.

    Args:
        stats: the data.
        n_boot: number of replicates B.
        level: interval coverage (percentiles (1 − level)/2 and (1 + level)/2).
        seed: seed of the resampling.
        batch_size: replicates per stacked fit (memory grows with batch_size · m).
        init: the fit on all data, to warm-start from.
        fit_batch: the batched estimator (Thurstonian by default, or
            :func:`~fit.bradley_terry.fit_bradley_terry_batch`).
        **fit_kwargs: passed to ``fit_batch``.

    Returns:
        A :class:`BootstrapResult`.
    """
    _require(stats, "bootstrap_mu")
    if n_boot < 2 or not 0 < level < 1 or batch_size < 1:
        raise ValueError(
            f"need n_boot >= 2, 0 < level < 1, batch_size >= 1; got {n_boot}, {level}, {batch_size}"
        )
    if init is None:
        init = fit_batch([stats], **fit_kwargs)[0]
    fit_kwargs = {**fit_kwargs, "allow_unobserved": True, "check_connected": False}
    rng = np.random.default_rng(seed)
    m = stats.n_pairs
    samples = np.empty((n_boot, stats.n_outcomes))
    for start in range(0, n_boot, batch_size):
        reps = [
            stats.with_weights(stats.n * np.bincount(rng.integers(0, m, m), minlength=m))
            for _ in range(min(batch_size, n_boot - start))
        ]
        for k, res in enumerate(fit_batch(reps, init=init, **fit_kwargs)):
            mu = res.mu.copy()
            if res.observed is not None:
                mu[~res.observed] = np.nan
            samples[start + k] = mu
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return BootstrapResult(lo, hi, samples, level)


def n_pairs_total(n_outcomes: int) -> int:
    """Number of unordered pairs N(N − 1)/2."""
    return n_outcomes * (n_outcomes - 1) // 2


def unrank_pairs(k: npt.ArrayLike, n_outcomes: int) -> tuple[npt.NDArray[np.int64], ...]:
    """Map linear indices over the upper triangle (row-major) to pairs (i, j), i < j.

    Args:
        k: indices in [0, N(N − 1)/2), int64 array.
        n_outcomes: N.

    Returns:
        (i, j) int64 arrays of k's shape.
    """
    k = np.asarray(k, dtype=np.int64)
    n = n_outcomes
    start = lambda i: i * (2 * n - i - 1) // 2  # noqa: E731 — first index of row i
    i = np.floor(((2 * n - 1) - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    i = np.clip(i, 0, n - 2)
    i = np.where(start(i) > k, i - 1, i)  # float rounding, at most one step either way
    i = np.where(start(i + 1) <= k, i + 1, i)
    return i, k - start(i) + i + 1


def holdout_pairs(n_outcomes: int, size: int | None = None, seed: int = 0) -> npt.NDArray[np.int64]:
    """The held-out pair set, fixed up front and never used for acquisition or training.

    Args:
        n_outcomes: N.
        size: number of pairs; default min(5 % of all N(N − 1)/2 pairs, 1000).
        seed: seed of the draw (same seed, same set).

    Returns:
        Distinct pairs, shape (size, 2), int64, with i < j, sorted.
    """
    total = n_pairs_total(n_outcomes)
    if size is None:
        size = min(int(0.05 * total), 1000)
    if not 0 <= size <= total:
        raise ValueError(f"holdout size {size} is outside [0, {total}] for {n_outcomes} outcomes")
    rng = np.random.default_rng(seed)
    k = np.sort(rng.choice(total, size=size, replace=False))
    i, j = unrank_pairs(k, n_outcomes)
    return np.stack([i, j], axis=1)


def split_holdout(stats: PairStats, holdout: npt.ArrayLike) -> tuple[PairStats, PairStats]:
    """Split data into (training, held-out) by a pair list from :func:`holdout_pairs`.

    Args:
        stats: all observed pairs.
        holdout: pairs (k, 2) with i < j.

    Returns:
        (pairs not in the holdout, pairs in it).
    """
    h = np.asarray(holdout, dtype=np.int64).reshape(-1, 2)
    inside = np.isin(stats.keys(), pair_keys(h[:, 0], h[:, 1], stats.n_outcomes))
    return stats.select(~inside), stats.select(inside)
