"""Transitivity: how often a model's pairwise preferences go round in a circle.

For a triad (a, b, c) the probability that the three pairwise choices form a cycle, when each
pair is decided independently with the measured probabilities, is

    P(a≻b)·P(b≻c)·P(c≻a) + P(b≻a)·P(c≻b)·P(a≻c).

It is 0 for a deterministic transitive agent, 0.25 on average for an agent whose probabilities
are uniform at random and exactly 0.25 for an indifferent one (every P = ½), and 1 for a
deterministic cycle. The
*hard-cycle rate* is the share of triads whose majority preferences (each P thresholded at ½)
form a cycle.

Triads are sampled with :func:`sample_triads`; :func:`triad_pairs` lists the unordered pairs to
elicit for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    IntArray,
    as_float,
    new_figure,
    same_length,
    save_figure,
)

ProbabilityFn = Callable[[IntArray, IntArray], npt.ArrayLike]
"""A vectorised P(i ≻ j): index arrays of shape (m,) in, probabilities of shape (m,) out."""

RANDOM_AGENT_CYCLE_PROB = 0.25
"""Expected cycle probability when every P(i≻j) is uniform on [0, 1], independently."""


@dataclass(frozen=True)
class TransitivityResult:
    """Cycle statistics over a sample of triads."""

    triads: IntArray
    """Outcome indices (a, b, c) of the triads scored, int64, shape (T, 3)."""
    cycle_prob: FloatArray
    """Per-triad probability of a preference cycle, in [0, 1]; shape (T,)."""
    hard_cycle: npt.NDArray[np.bool_]
    """Per triad: do the majority preferences (P thresholded at ½) form a cycle; shape (T,)."""
    mean_cycle_prob: float
    """Mean of ``cycle_prob``. Not 0 for a transitive but noisy agent: compare it with
    :func:`transitive_floor`, the value such an agent reaches with the fitted noise."""
    median_cycle_prob: float
    """Median of ``cycle_prob``."""
    hard_cycle_rate: float
    """Share of triads with a majority-preference cycle, in [0, 1]; the headline number."""
    n_skipped: int
    """Triads dropped because one of their pairs has no measured probability (NaN)."""

    @property
    def n_triads(self) -> int:
        """Number of triads scored."""
        return len(self.cycle_prob)


def sample_triads(n_outcomes: int, n_triads: int = 1000, seed: int = 0) -> IntArray:
    """Distinct random triads of outcome indices.

    Args:
        n_outcomes: number of outcomes N (>= 3).
        n_triads: number of triads wanted; all C(N, 3) triads when there are no more than that.
        seed: seed of the random generator.

    Returns:
        int64 array of shape (T, 3), each row sorted ascending, rows unique, in random order.
    """
    n = int(n_outcomes)
    if n < 3:
        raise AnalysisInputError(f"sample_triads: need at least 3 outcomes, got {n}")
    if n_triads < 1:
        raise AnalysisInputError(f"sample_triads: n_triads must be >= 1, got {n_triads}")
    rng = np.random.default_rng(seed)
    total = n * (n - 1) * (n - 2) // 6
    if total <= n_triads:
        a, b, c = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
        keep = (a < b) & (b < c)
        all_triads = np.stack([a[keep], b[keep], c[keep]], axis=1).astype(np.int64)
        return all_triads[rng.permutation(len(all_triads))]
    chosen = np.empty((0, 3), dtype=np.int64)
    while len(chosen) < n_triads:
        draw = np.sort(rng.integers(0, n, size=(2 * (n_triads - len(chosen)) + 16, 3)), axis=1)
        draw = draw[(draw[:, 0] < draw[:, 1]) & (draw[:, 1] < draw[:, 2])]
        merged = np.concatenate([chosen, draw])
        _, first = np.unique(merged, axis=0, return_index=True)
        chosen = merged[np.sort(first)]
    return chosen[:n_triads]


def triad_pairs(triads: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """The unordered pairs (i < j) that the triads need, each once, sorted."""
    t = np.asarray(triads, dtype=np.int64).reshape(-1, 3)
    i = np.concatenate([t[:, 0], t[:, 1], t[:, 0]])
    j = np.concatenate([t[:, 1], t[:, 2], t[:, 2]])
    pairs = np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def probability_matrix(
    i: npt.ArrayLike, j: npt.ArrayLike, p: npt.ArrayLike, n_outcomes: int
) -> FloatArray:
    """A dense (N, N) matrix of P(row ≻ column) from measured pairs.

    ``P[i, j] = p`` and ``P[j, i] = 1 − p``; the diagonal is ½; unmeasured pairs are NaN. A pair
    given twice keeps its last value (fold repeated measurements first, e.g. with
    :func:`fit.stats.fold`).
    """
    ii = np.asarray(i, dtype=np.int64)
    jj = np.asarray(j, dtype=np.int64)
    pp = as_float("p", p)
    same_length(i=ii, j=jj, p=pp)
    if len(ii) and (min(ii.min(), jj.min()) < 0 or max(ii.max(), jj.max()) >= n_outcomes):
        raise AnalysisInputError(
            f"probability_matrix: indices must lie in [0, {n_outcomes}); got range "
            f"[{min(ii.min(), jj.min())}, {max(ii.max(), jj.max())}]"
        )
    m = np.full((n_outcomes, n_outcomes), np.nan)
    m[ii, jj] = pp
    m[jj, ii] = 1.0 - pp
    np.fill_diagonal(m, 0.5)
    return m


def cycle_probability(p_ab: npt.ArrayLike, p_bc: npt.ArrayLike, p_ca: npt.ArrayLike) -> FloatArray:
    """Per-triad cycle probability from P(a≻b), P(b≻c) and P(c≻a), each shape (T,)."""
    ab, bc, ca = (np.asarray(x, dtype=np.float64) for x in (p_ab, p_bc, p_ca))
    return ab * bc * ca + (1.0 - ab) * (1.0 - bc) * (1.0 - ca)


def transitivity_from_triads(
    triads: npt.ArrayLike, p_ab: npt.ArrayLike, p_bc: npt.ArrayLike, p_ca: npt.ArrayLike
) -> TransitivityResult:
    """Cycle statistics from per-triad probabilities.

    Args:
        triads: outcome indices (a, b, c), shape (T, 3) (only carried into the result).
        p_ab: P(a ≻ b) per triad, shape (T,).
        p_bc: P(b ≻ c) per triad, shape (T,).
        p_ca: P(c ≻ a) per triad, shape (T,).

    Triads with a NaN probability are dropped and counted in ``n_skipped``.
    """
    t = np.asarray(triads, dtype=np.int64).reshape(-1, 3)
    ab, bc, ca = as_float("p_ab", p_ab), as_float("p_bc", p_bc), as_float("p_ca", p_ca)
    same_length(triads=t, p_ab=ab, p_bc=bc, p_ca=ca)
    stacked = np.stack([ab, bc, ca], axis=1)
    ok = np.all(np.isfinite(stacked), axis=1)
    if np.any((stacked[ok] < 0) | (stacked[ok] > 1)):
        raise AnalysisInputError("transitivity: probabilities must lie in [0, 1]")
    if not ok.any():
        raise AnalysisInputError(
            f"transitivity: none of the {len(t)} triads has all three pairs measured"
        )
    t, ab, bc, ca = t[ok], ab[ok], bc[ok], ca[ok]
    cp = cycle_probability(ab, bc, ca)
    wins = np.stack([ab > 0.5, bc > 0.5, ca > 0.5], axis=1)
    losses = np.stack([ab < 0.5, bc < 0.5, ca < 0.5], axis=1)
    hard = np.all(wins, axis=1) | np.all(losses, axis=1)  # an exact tie breaks no cycle
    return TransitivityResult(
        triads=t,
        cycle_prob=cp,
        hard_cycle=hard,
        mean_cycle_prob=float(cp.mean()),
        median_cycle_prob=float(np.median(cp)),
        hard_cycle_rate=float(hard.mean()),
        n_skipped=int((~ok).sum()),
    )


def transitivity(
    prob: npt.ArrayLike | ProbabilityFn,
    triads: npt.ArrayLike | None = None,
    *,
    n_triads: int = 1000,
    seed: int = 0,
) -> TransitivityResult:
    """Cycle statistics of a preference relation over sampled triads.

    Args:
        prob: either a dense (N, N) matrix of P(row ≻ column) with ``P[j, i] = 1 − P[i, j]``
            (NaN for unmeasured pairs; see :func:`probability_matrix`), or a vectorised function
            ``f(i, j) -> P(i ≻ j)``.
        triads: outcome indices, shape (T, 3); sampled with :func:`sample_triads` when omitted
            (which needs a matrix, to know N).
        n_triads: number of triads to sample when ``triads`` is omitted.
        seed: seed for sampling the triads.
    """
    if callable(prob):
        if triads is None:
            raise AnalysisInputError(
                "transitivity: with a probability function, pass the triads (sample_triads(N))"
            )
        t = np.asarray(triads, dtype=np.int64).reshape(-1, 3)
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        p_ab, p_bc, p_ca = (np.asarray(prob(x, y), np.float64) for x, y in ((a, b), (b, c), (c, a)))
        return transitivity_from_triads(t, p_ab, p_bc, p_ca)
    m = as_float("prob", prob, ndim=2)
    if m.shape[0] != m.shape[1]:
        raise AnalysisInputError(f"transitivity: the matrix must be square, got {m.shape}")
    both = np.isfinite(m) & np.isfinite(m.T)
    off = both & ~np.eye(len(m), dtype=bool)
    worst = float(np.max(np.abs(m + m.T - 1.0)[off], initial=0.0))
    if worst > 1e-6:
        raise AnalysisInputError(
            f"transitivity: P[i, j] + P[j, i] must equal 1 (largest deviation {worst:.3g}); "
            "fold both orientations into one probability per pair first"
        )
    t = sample_triads(len(m), n_triads, seed) if triads is None else np.asarray(triads, np.int64)
    t = t.reshape(-1, 3)
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    return transitivity_from_triads(t, m[a, b], m[b, c], m[c, a])


def transitive_floor(
    triads: npt.ArrayLike,
    mu: npt.ArrayLike,
    sigma2: npt.ArrayLike,
    position_bias: float = 0.0,
) -> FloatArray:
    """Per-triad cycle probability of a *transitive* agent with the fitted noise.

    The agent prefers i to j with P = Φ((μᵢ − μⱼ ± β) / √(σᵢ² + σⱼ²)), the two signs of the
    position shift β averaged as the folded probabilities are; its utilities are a total order,
    yet its pairwise probabilities cycle with the returned probability. This is the floor the
    observed cycle probability is read against.

    Args:
        triads: outcome indices (a, b, c), shape (T, 3).
        mu: fitted utilities, shape (N,).
        sigma2: fitted utility variances, shape (N,).
        position_bias: fitted first-position shift β on the μ scale (0 when not fitted).
    """
    from scipy.special import ndtr

    t = np.asarray(triads, dtype=np.int64).reshape(-1, 3)
    m = as_float("mu", mu)
    s2 = as_float("sigma2", sigma2)
    same_length(mu=m, sigma2=s2)

    def p(i: IntArray, j: IntArray) -> FloatArray:
        scale = np.sqrt(s2[i] + s2[j] + 1e-12)
        d = m[i] - m[j]
        return np.asarray(
            0.5 * (ndtr((d + position_bias) / scale) + ndtr((d - position_bias) / scale))
        )

    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    return cycle_probability(p(a, b), p(b, c), p(c, a))


def plot_transitivity(
    result: TransitivityResult, path: str | Path, floor: float | None = None
) -> Path:
    """Histogram of per-triad cycle probabilities with the mean, the transitive floor (when
    given: what a transitive agent with the fitted noise scores) and the random-agent level."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.hist(result.cycle_prob, bins=np.linspace(0.0, 1.0, 51).tolist(), color="#4c72b0")
    ax.axvline(result.mean_cycle_prob, color="black", linestyle="-", label="mean")
    if floor is not None and np.isfinite(floor):
        ax.axvline(floor, color="#55a868", linestyle=":", label="transitive floor")
    ax.axvline(RANDOM_AGENT_CYCLE_PROB, color="#c44e52", linestyle="--", label="all P = ½")
    ax.set_xlabel("cycle probability of a triad")
    ax.set_ylabel("triads")
    ax.set_title(
        f"Transitivity: hard cycles {100 * result.hard_cycle_rate:.1f}%, "
        f"mean {result.mean_cycle_prob:.3f} (n = {result.n_triads})"
    )
    ax.legend()
    return save_figure(fig, path)
