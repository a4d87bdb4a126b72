"""Active learning: which pairs to ask next. Pure numerics — edges in, edges out.

A run alternates "fit → choose pairs → elicit" until the budget ⌊2·N·log₂N⌋ edges is spent
(:func:`budget`), starting from a random 2-regular graph (:func:`random_regular_start`). Pairs are
arrays of shape (k, 2); the held-out set (:func:`fit.metrics.holdout_pairs`) is passed as
``exclude`` everywhere so it is never asked during acquisition.

Candidates. For N up to a few thousand every unqueried pair is scored (N(N − 1)/2 pairs as
arrays: 4.5 M at N = 3,000). When there are more than ``max_candidates`` pairs, a uniform sample
of that many pairs (with replacement, deduplicated) is scored instead; acquisition then picks
the best pairs of the sample, which for a few million candidates is indistinguishable in
practice.

Acquisition functions:

- :func:`reference_acquire` — the original procedure (docs/methods.md, "Active learning"): the intersection of the
  bottom P % of |μᵢ − μⱼ| and the bottom Q % of combined degree among candidates, widened ×1.5 up
  to 5 times, a random subset of it if larger than needed, then random fill. "Bottom P %" is by
  rank (ties broken at random), so integer degrees do not inflate the set. Variances are unused.
- :func:`information_acquire` — uses σ²: greedy A-optimal design under a diagonal Fisher
  approximation (formula in its docstring). It balances degrees by construction: an outcome
  with little information so far gains most from a new edge.
- :func:`pseudo_labels` — hard labels for confidently predicted unqueried pairs, returned as
  separate :class:`~fit.stats.PairStats` so callers keep them out of every metric.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import expit, log_ndtr

from fit.errors import FitError
from fit.metrics import n_pairs_total, unrank_pairs
from fit.result import BRADLEY_TERRY, FitResult, predict_proba
from fit.stats import PairStats, pair_keys

Edges = npt.NDArray[np.int64]
_NO_EDGES = np.zeros((0, 2), dtype=np.int64)


def budget(n_outcomes: int) -> int:
    """Edge budget of the reference procedure, ⌊2·N·log₂N⌋ (9,174 for N = 510)."""
    if n_outcomes < 2:
        return 0
    return math.floor(2 * n_outcomes * math.log2(n_outcomes))


def _edges(pairs: npt.ArrayLike | None) -> Edges:
    if pairs is None:
        return _NO_EDGES
    e = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.stack([e.min(axis=1), e.max(axis=1)], axis=1)


def _keys(pairs: npt.ArrayLike | None, n: int) -> npt.NDArray[np.int64]:
    e = _edges(pairs)
    return np.unique(pair_keys(e[:, 0], e[:, 1], n))


def random_regular_start(
    n_outcomes: int, degree: int = 2, seed: int = 0, exclude: npt.ArrayLike | None = None
) -> Edges:
    """A random ``degree``-regular start graph that avoids the excluded (held-out) pairs.

    Built as the union of degree/2 random Hamiltonian cycles; an edge that is excluded or
    repeats an earlier cycle's edge is removed by a random 2-opt move (reverse the cycle between
    it and another edge), so every node keeps exactly ``degree`` neighbours.

    Args:
        n_outcomes: N ≥ degree + 1.
        degree: even degree (2 by default: N edges).
        seed: seed of the draw.
        exclude: pairs (k, 2) never to use, e.g. the holdout.

    Returns:
        N·degree/2 distinct edges, shape (E, 2), int64, i < j.

    Raises:
        ValueError: odd degree, or too few outcomes.
        FitError: the exclusions leave no such graph reachable (after many repair tries).
    """
    if degree < 2 or degree % 2:
        raise ValueError(f"degree must be even and >= 2, got {degree}")
    if n_outcomes < degree + 1:
        raise ValueError(
            f"a {degree}-regular graph needs at least {degree + 1} outcomes, got {n_outcomes}"
        )
    rng = np.random.default_rng(seed)
    n = n_outcomes
    forbidden = _keys(exclude, n)
    cycles = []
    for _ in range(degree // 2):
        c = rng.permutation(n).astype(np.int64)
        for _attempt in range(100 * n + 1000):
            nxt = np.roll(c, -1)
            keys = pair_keys(np.minimum(c, nxt), np.maximum(c, nxt), n)
            bad = np.flatnonzero(np.isin(keys, forbidden))
            if not bad.size:
                break
            # 2-opt: drop the edges at positions k0 and l0, reconnect by reversing between them
            k0, l0 = sorted((int(bad[0]), int(rng.integers(0, n))))
            if l0 - k0 >= 2 and not (k0 == 0 and l0 == n - 1):
                c[k0 + 1 : l0 + 1] = c[k0 + 1 : l0 + 1][::-1].copy()
        else:
            raise FitError(
                f"could not build a {degree}-regular start graph on {n} outcomes avoiding "
                f"{len(forbidden)} excluded pairs; exclude fewer pairs or lower the degree"
            )
        cycles.append(np.stack([np.minimum(c, nxt), np.maximum(c, nxt)], axis=1))
        forbidden = np.union1d(forbidden, keys)
    edges = np.concatenate(cycles)
    return edges[np.argsort(pair_keys(edges[:, 0], edges[:, 1], n), kind="stable")]


def candidate_pairs(
    n_outcomes: int,
    queried: npt.ArrayLike | None,
    exclude: npt.ArrayLike | None,
    rng: np.random.Generator,
    max_candidates: int = 2_000_000,
) -> Edges:
    """Unqueried, non-excluded pairs: all of them, or a uniform sample when there are more than
    ``max_candidates`` pairs in all (module docstring). Returns (c, 2) int64, i < j."""
    total = n_pairs_total(n_outcomes)
    if total <= max_candidates:
        i, j = np.triu_indices(n_outcomes, 1)
        i, j = i.astype(np.int64), j.astype(np.int64)
    else:
        i, j = unrank_pairs(np.unique(rng.integers(0, total, max_candidates)), n_outcomes)
    taken = np.union1d(_keys(queried, n_outcomes), _keys(exclude, n_outcomes))
    free = ~np.isin(pair_keys(i, j, n_outcomes), taken)
    return np.stack([i[free], j[free]], axis=1)


def _bottom(values: np.ndarray, percent: float, rng: np.random.Generator) -> np.ndarray:
    """Mask of the ⌈percent % · len⌉ smallest values, ties broken at random."""
    k = math.ceil(min(percent, 100.0) / 100.0 * len(values))
    order = np.lexsort((rng.random(len(values)), values))
    mask = np.zeros(len(values), dtype=bool)
    mask[order[:k]] = True
    return mask


def reference_acquire(
    mu: npt.ArrayLike,
    queried: npt.ArrayLike,
    *,
    n_new: int = 500,
    p_percent: float = 10.0,
    q_percent: float = 20.0,
    widen: float = 1.5,
    max_widen: int = 5,
    exclude: npt.ArrayLike | None = None,
    seed: int = 0,
    max_candidates: int = 2_000_000,
) -> Edges:
    """The reference-compatible acquisition: close pairs among rarely asked outcomes.

    Args:
        mu: current utilities, shape (N,).
        queried: pairs asked so far, (E, 2); their degrees are the combined-degree criterion.
        n_new: pairs to return.
        p_percent: P, bottom share (%) of |μᵢ − μⱼ| among candidates.
        q_percent: Q, bottom share (%) of degree(i) + degree(j) among candidates.
        widen: factor applied to P and Q while the intersection has fewer than n_new pairs.
        max_widen: how many times to widen before filling at random.
        exclude: pairs never to return (the holdout).
        seed: seed for tie-breaking, subsampling and fill.
        max_candidates: see the module docstring.

    Returns:
        min(n_new, #candidates) distinct unqueried, non-excluded pairs, (k, 2) int64, i < j.
    """
    mu = np.asarray(mu, dtype=np.float64)
    n = len(mu)
    rng = np.random.default_rng(seed)
    q = _edges(queried)
    degree = np.bincount(q.ravel(), minlength=n)
    cand = candidate_pairs(n, q, exclude, rng, max_candidates)
    if len(cand) <= n_new:
        return cand
    gap = np.abs(mu[cand[:, 0]] - mu[cand[:, 1]])
    deg = degree[cand[:, 0]] + degree[cand[:, 1]]
    p, qq = p_percent, q_percent
    for _ in range(max_widen + 1):
        chosen = np.flatnonzero(_bottom(gap, p, rng) & _bottom(deg, qq, rng))
        if len(chosen) >= n_new:
            break
        p, qq = p * widen, qq * widen
    if len(chosen) >= n_new:
        chosen = rng.choice(chosen, n_new, replace=False)
    else:
        rest = np.setdiff1d(np.arange(len(cand)), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, n_new - len(chosen), replace=False)])
    return cand[np.sort(chosen)]


def edge_information(result: FitResult, i: npt.ArrayLike, j: npt.ArrayLike) -> np.ndarray:
    """Fisher information about μᵢ − μⱼ (on the ``mu`` scale) of one observation of (i, j).

    Probit: I = φ(z)² / (Φ(z)·Φ(−z)) / v with v = σᵢ² + σⱼ² + ε, z = (μᵢ − μⱼ)/√v.
    Logit (Bradley–Terry): I = q(1 − q)·scale² with q = sigmoid(scale·(μᵢ − μⱼ)).
    Unobserved outcomes are treated as μ = 0 with the median observed σ².
    """
    ii, jj = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    mu = result.mu
    if result.estimator == BRADLEY_TERRY or result.sigma2 is None:
        q = expit(result.scale * (mu[ii] - mu[jj]))
        return q * (1 - q) * result.scale**2
    sig2 = result.sigma2
    finite = np.isfinite(sig2)
    if not finite.all():
        sig2 = np.where(finite, sig2, np.median(sig2[finite]) if finite.any() else 1.0)
    v = sig2[ii] + sig2[jj] + result.eps
    z = (mu[ii] - mu[jj]) / np.sqrt(v)
    logphi = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
    return np.exp(2 * logphi - log_ndtr(z) - log_ndtr(-z)) / v


def information_acquire(
    result: FitResult,
    queried: npt.ArrayLike,
    *,
    n_new: int = 500,
    prior_precision: float = 1.0,
    exclude: npt.ArrayLike | None = None,
    seed: int = 0,
    max_candidates: int = 2_000_000,
    max_rounds: int = 200,
) -> Edges:
    """Pick the pairs that most reduce Σᵢ Var(μᵢ) under a diagonal Fisher approximation.

    With Iᵢⱼ = :func:`edge_information` and Jᵢ = prior_precision + Σ of I over the queried edges
    at i (so Var(μᵢ) ≈ 1/Jᵢ), one more observation of (i, j) reduces the summed variance by

        gain(i, j) = 1/Jᵢ − 1/(Jᵢ + Iᵢⱼ) + 1/Jⱼ − 1/(Jⱼ + Iᵢⱼ).

    Informative pairs are close in z (|Δμ| small relative to √(σᵢ² + σⱼ²)) and noisy outcomes
    count for less per edge; low-J (rarely or uninformatively asked) outcomes are favoured, which
    balances degrees. The batch is chosen greedily in rounds: each round takes, in order of gain,
    the pairs whose two outcomes were not the best-scoring pair of anything earlier in that round
    (a matching), adds their I to J and rescores.

    Args:
        result: the current fit (Thurstonian, or Bradley–Terry).
        queried: pairs asked so far, (E, 2).
        n_new: pairs to return.
        prior_precision: precision of μ before any data (on the sd-1 scale).
        exclude: pairs never to return (the holdout).
        seed: seed for tie-breaking jitter and candidate sampling.
        max_candidates: see the module docstring.
        max_rounds: cap on greedy rounds (the remainder is then filled by gain).

    Returns:
        min(n_new, #candidates) distinct unqueried, non-excluded pairs, (k, 2) int64, i < j.
    """
    n = result.n_outcomes
    rng = np.random.default_rng(seed)
    q = _edges(queried)
    precision = np.full(n, float(prior_precision))
    if len(q):
        info_q = edge_information(result, q[:, 0], q[:, 1])
        precision += np.bincount(q[:, 0], info_q, n) + np.bincount(q[:, 1], info_q, n)
    cand = candidate_pairs(n, q, exclude, rng, max_candidates)
    if len(cand) <= n_new:
        return cand
    ci, cj = cand[:, 0], cand[:, 1]
    info = edge_information(result, ci, cj)
    jitter = 1.0 + 1e-9 * rng.random(len(cand))
    open_ = np.ones(len(cand), dtype=bool)
    picked: list[np.ndarray] = []
    need = n_new
    for round_ in range(max_rounds + 1):
        if need == 0:
            break
        ji, jj = precision[ci], precision[cj]
        gain = (1 / ji - 1 / (ji + info) + 1 / jj - 1 / (jj + info)) * jitter
        gain[~open_] = -np.inf
        top = min(len(cand), 20 * need)
        best = np.argpartition(-gain, top - 1)[:top]
        best = best[np.argsort(-gain[best], kind="stable")]
        best = best[open_[best]]
        if round_ == max_rounds:
            take = best[:need]
        else:
            rank = np.arange(len(best))
            first = np.full(n, len(best))
            np.minimum.at(first, ci[best], rank)
            np.minimum.at(first, cj[best], rank)
            ok = (first[ci[best]] == rank) & (first[cj[best]] == rank)
            take = best[ok][:need]
        picked.append(take)
        open_[take] = False
        need -= len(take)
        precision += np.bincount(ci[take], info[take], n) + np.bincount(cj[take], info[take], n)
    chosen = np.concatenate(picked)
    return cand[np.sort(chosen)]


def pseudo_labels(
    result: FitResult,
    queried: npt.ArrayLike,
    *,
    threshold: float = 0.95,
    weight: float = 1.0,
    exclude: npt.ArrayLike | None = None,
    seed: int = 0,
    max_candidates: int = 2_000_000,
) -> PairStats:
    """Hard labels for unqueried pairs the fit is confident about (the reference's final refit).

    A pair with P(i ≻ j) ≥ threshold gets label 1, one with P ≤ 1 − threshold label 0. Keep the
    result out of every metric; combine it with real data only for a refit.

    Args:
        result: the current fit.
        queried: pairs already asked, (E, 2) (they keep their real labels).
        threshold: confidence needed, in (0.5, 1).
        weight: observation weight n given to each pseudo-labelled pair.
        exclude: pairs never to label (the holdout).
        seed: seed for candidate sampling when pairs are subsampled.
        max_candidates: see the module docstring.

    Returns:
        :class:`~fit.stats.PairStats` of the pseudo-labelled pairs (possibly empty).
    """
    if not 0.5 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0.5, 1), got {threshold}")
    n = result.n_outcomes
    cand = candidate_pairs(n, queried, exclude, np.random.default_rng(seed), max_candidates)
    prob = predict_proba(result, cand[:, 0], cand[:, 1])
    sure = (prob >= threshold) | (prob <= 1.0 - threshold)
    c = cand[sure]
    label = (prob[sure] >= threshold).astype(np.float64)
    return PairStats(c[:, 0], c[:, 1], np.full(len(c), float(weight)), label, n)
