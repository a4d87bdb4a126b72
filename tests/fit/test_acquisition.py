"""Active-learning acquisition: start graph, reference and information acquisition, budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fit import (
    FitResult,
    budget,
    fit_thurstonian,
    holdout_pairs,
    information_acquire,
    pseudo_labels,
    random_regular_start,
    reference_acquire,
)
from fit.acquisition import candidate_pairs, edge_information


def _keys(e: np.ndarray, n: int) -> set[int]:
    return set((e[:, 0] * n + e[:, 1]).tolist())


def test_budget_values():
    assert budget(510) == 9174  # ⌊2 · 510 · log₂ 510⌋
    assert budget(2) == 4
    assert budget(1024) == 2 * 1024 * 10
    assert budget(1) == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 400), st.integers(0, 10_000), st.sampled_from([2, 4]))
def test_random_regular_start_properties(n, seed, degree):
    if n < degree + 3:
        return
    exclude = holdout_pairs(n, seed=seed) if n >= 10 else None
    e = random_regular_start(n, degree=degree, seed=seed, exclude=exclude)
    assert e.shape == (n * degree // 2, 2) and e.dtype == np.int64
    assert np.all(e[:, 0] < e[:, 1])
    assert np.all(np.bincount(e.ravel(), minlength=n) == degree)
    assert len(_keys(e, n)) == len(e)  # no duplicate edges
    if exclude is not None:
        assert not _keys(e, n) & _keys(exclude, n)


def test_random_regular_start_is_seeded_and_validated():
    assert np.array_equal(random_regular_start(50, seed=3), random_regular_start(50, seed=3))
    assert not np.array_equal(random_regular_start(50, seed=3), random_regular_start(50, seed=4))
    with pytest.raises(ValueError, match="even"):
        random_regular_start(10, degree=3)
    with pytest.raises(ValueError, match="at least 3"):
        random_regular_start(2)


def test_reference_acquire_returns_fresh_unique_pairs(rng):
    n = 200
    mu = rng.normal(size=n)
    h = holdout_pairs(n)
    q = random_regular_start(n, exclude=h)
    new = reference_acquire(mu, q, n_new=500, exclude=h, seed=1)
    assert new.shape == (500, 2) and np.all(new[:, 0] < new[:, 1])
    assert len(_keys(new, n)) == 500
    assert not _keys(new, n) & (_keys(q, n) | _keys(h, n))
    # The chosen pairs are close in utility compared with random pairs.
    gap = np.abs(mu[new[:, 0]] - mu[new[:, 1]]).mean()
    assert gap < 0.5 * np.abs(mu[:, None] - mu[None, :]).mean()
    assert np.array_equal(new, reference_acquire(mu, q, n_new=500, exclude=h, seed=1))


def test_reference_acquire_widens_then_fills(rng):
    n = 30  # 435 pairs; a tiny P and Q force widening and the random fill
    mu = rng.normal(size=n)
    q = random_regular_start(n)
    new = reference_acquire(mu, q, n_new=300, p_percent=1, q_percent=1, max_widen=1)
    assert len(_keys(new, n)) == 300 and not _keys(new, n) & _keys(q, n)
    everything = reference_acquire(mu, q, n_new=10_000)
    assert len(everything) == 435 - n  # all that is left, no more


def test_candidate_sampling_for_large_n(rng):
    n = 100_000
    cand = candidate_pairs(n, np.array([[0, 1]]), None, rng, max_candidates=50_000)
    assert 49_000 < len(cand) <= 50_000
    assert np.all(cand[:, 0] < cand[:, 1]) and cand.max() < n
    new = reference_acquire(
        rng.normal(size=n), np.array([[0, 1]]), n_new=100, max_candidates=20_000
    )
    assert len(_keys(new, n)) == 100


def _fit(agent, rng, pairs):
    return fit_thurstonian(agent.pairs(pairs, 2, rng))


def test_information_acquire_properties(thurstone_agent, rng):
    n = thurstone_agent.n
    h = holdout_pairs(n)
    q = random_regular_start(n, exclude=h, degree=6)
    result = fit_thurstonian(thurstone_agent.pairs(q, 4, rng))
    new = information_acquire(result, q, n_new=300, exclude=h)
    assert new.shape == (300, 2) and len(_keys(new, n)) == 300
    assert not _keys(new, n) & (_keys(q, n) | _keys(h, n))
    deg = np.bincount(np.concatenate([q, new]).ravel(), minlength=n)
    assert deg.min() >= 3  # every outcome got at least one new edge

    def precision(e: np.ndarray) -> np.ndarray:
        info = edge_information(result, e[:, 0], e[:, 1])
        return np.bincount(e[:, 0], info, n) + np.bincount(e[:, 1], info, n)

    rand = reference_acquire(np.zeros(n), q, n_new=300, p_percent=100, q_percent=100, exclude=h)

    # Its objective, Σ 1/J (approximate total variance of μ), ends lower than with random pairs.
    def total_var(e: np.ndarray) -> float:
        return float(np.sum(1.0 / (1.0 + precision(np.concatenate([q, e])))))

    assert total_var(new) < 0.9 * total_var(rand)


def test_information_handles_unobserved_and_bradley_terry():
    mu = np.array([0.0, 1.0, -1.0, 0.0])
    r = FitResult(
        mu,
        np.array([1.0, 1.0, 1.0, np.inf]),
        0,
        True,
        0.0,
        "thurstonian",
        0.0,
        observed=np.array([True, True, True, False]),
    )
    info = edge_information(r, np.array([0, 0]), np.array([1, 3]))
    assert np.all(np.isfinite(info)) and np.all(info > 0)
    new = information_acquire(r, np.array([[0, 1], [1, 2]]), n_new=2)
    assert 3 in new.ravel()  # the unobserved outcome gains most
    bt = FitResult(mu, None, 0, True, 0.0, "bradley-terry", 0.0, scale=2.0)
    assert len(information_acquire(bt, np.array([[0, 1]]), n_new=3)) == 3


def test_pseudo_labels_are_confident_and_separate(thurstone_agent, rng, all_pairs):
    n = thurstone_agent.n
    pairs = all_pairs(n)
    asked = pairs[rng.random(len(pairs)) < 0.2]
    result = _fit(thurstone_agent, rng, asked)
    h = holdout_pairs(n)
    pl = pseudo_labels(result, asked, exclude=h)
    assert pl.n_pairs > 0 and set(np.unique(pl.p).tolist()) <= {0.0, 1.0}
    assert not _keys(np.stack([pl.i, pl.j], 1), n) & (_keys(asked, n) | _keys(h, n))
    from fit import predict_proba

    q = predict_proba(result, pl.i, pl.j)
    assert np.all((q >= 0.95) | (q <= 0.05))
    assert np.array_equal(pl.p == 1.0, q >= 0.95)
    with pytest.raises(ValueError, match="threshold"):
        pseudo_labels(result, asked, threshold=0.4)
