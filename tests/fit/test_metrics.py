"""Metrics: accuracy, log-loss, calibration, order consistency, holdout, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fit import (
    FitError,
    FitResult,
    OrientedStats,
    PairStats,
    accuracy,
    bootstrap_mu,
    calibration,
    fit_bradley_terry_batch,
    fit_thurstonian,
    holdout_pairs,
    log_loss,
    order_consistency,
    split_holdout,
)
from fit.metrics import n_pairs_total, unrank_pairs

# Homoscedastic Thurstonian "truth" with σ² = 0.5 so that P(i ≻ j) = Φ(μᵢ − μⱼ).
TRUTH = FitResult(np.array([0.0, 1.0, -1.0]), np.full(3, 0.5), 0, True, 0.0, "thurstonian", 0.0)


def test_accuracy_by_hand():
    # Predictions: P(0≻1) < .5, P(0≻2) > .5, P(1≻2) > .5.
    stats = PairStats([0, 0, 1, 0], [1, 2, 2, 1], [1, 1, 1, 5], [0.2, 0.3, 0.9, 0.5], 3)
    # Pair 4 has label exactly 0.5: excluded. Correct: pair 1 and 3; wrong: pair 2.
    assert accuracy(TRUTH, stats) == pytest.approx(2 / 3)
    assert accuracy(TRUTH, stats, weighted=True) == pytest.approx(2 / 3)
    assert np.isnan(accuracy(TRUTH, PairStats([0], [1], [1], [0.5], 3)))


def test_accuracy_gives_half_credit_to_ties():
    flat = FitResult(np.zeros(2), np.ones(2), 0, True, 0.0, "thurstonian", 0.0)
    assert accuracy(flat, PairStats([0], [1], [1], [0.9], 2)) == 0.5


def test_log_loss_by_hand():
    from scipy.stats import norm

    stats = PairStats([0, 0], [1, 2], [1, 3], [0.25, 1.0], 3)
    q = norm.cdf([-1.0, 1.0])
    per_pair = -(stats.p * np.log(q) + (1 - stats.p) * np.log(1 - q))
    assert log_loss(TRUTH, stats) == pytest.approx(per_pair.mean())
    assert log_loss(TRUTH, stats, weighted=True) == pytest.approx(per_pair @ [1, 3] / 4)


def test_log_loss_bradley_terry_uses_scale():
    bt = FitResult(np.array([1.0, -1.0]), None, 0, True, 0.0, "bradley-terry", 0.0, scale=0.5)
    # P(0 ≻ 1) = sigmoid(0.5 · 2) = sigmoid(1)
    expected = -np.log(1 / (1 + np.exp(-1.0)))
    assert log_loss(bt, PairStats([0], [1], [1], [1.0], 2)) == pytest.approx(expected)


def test_metric_shape_mismatch_is_clear():
    with pytest.raises(FitError, match="3 outcomes but the data has 4"):
        accuracy(TRUTH, PairStats([0], [3], [1], [0.2], 4))


def test_calibration_perfect_when_labels_are_predictions(thurstone_agent, all_pairs):
    pairs = all_pairs(thurstone_agent.n)
    p = thurstone_agent.prob_first(pairs[:, 0], pairs[:, 1])
    truth = FitResult(thurstone_agent.mu, thurstone_agent.sigma2, 0, True, 0, "thurstonian", 0)
    pred, label, weight, ece = calibration(
        truth, PairStats(pairs[:, 0], pairs[:, 1], np.ones(len(p)), p, thurstone_agent.n)
    )
    assert ece == pytest.approx(0.0, abs=1e-12)
    assert weight.sum() == len(p)


def test_order_consistency_by_hand():
    # pair (0,1): P(0|0 first)=.8, P(0|0 second)=1-.3=.7 → agree; |diff| .1
    # pair (0,2): P(0|0 first)=.6, P(0|0 second)=1-.7=.3 → first wins both (disagree); |diff| .3
    # pair (1,2): only one order → ignored
    o = OrientedStats(
        [0, 1, 0, 2, 1], [1, 0, 2, 0, 2], [1, 1, 1, 1, 1], [0.8, 0.3, 0.6, 0.7, 0.9], 3
    )
    c = order_consistency(o)
    assert c.n_pairs == 2
    assert c.agreement == 0.5
    assert c.mean_abs_diff == pytest.approx(0.2)
    assert c.first_wins_both == 0.5 and c.second_wins_both == 0.0
    empty = order_consistency(OrientedStats([0], [1], [1], [0.5], 2))
    assert empty.n_pairs == 0 and np.isnan(empty.agreement)


def test_holdout_defaults_and_determinism():
    h = holdout_pairs(510)
    assert h.shape == (1000, 2)
    assert np.all(h[:, 0] < h[:, 1]) and h.max() < 510
    assert len(np.unique(h[:, 0] * 510 + h[:, 1])) == 1000
    assert np.array_equal(h, holdout_pairs(510))
    assert not np.array_equal(h, holdout_pairs(510, seed=1))
    assert len(holdout_pairs(100)) == int(0.05 * 4950)  # 5 % below 20,000 pairs
    assert len(holdout_pairs(100_000)) == 1000
    with pytest.raises(ValueError, match="outside"):
        holdout_pairs(4, size=7)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 5000), st.data())
def test_unrank_pairs_is_the_row_major_upper_triangle(n, data):
    total = n_pairs_total(n)
    k = np.array(data.draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=20)))
    i, j = unrank_pairs(k, n)
    assert np.all((i >= 0) & (i < j) & (j < n))
    # rank back: start of row i plus offset within the row
    assert np.array_equal(i * (2 * n - i - 1) // 2 + (j - i - 1), k)


def test_unrank_pairs_huge_n_edges():
    n = 100_000
    k = np.array([0, 1, n - 2, n - 1, n_pairs_total(n) - 1])
    i, j = unrank_pairs(k, n)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (0, n - 1),
        (1, 2),
        (n - 2, n - 1),
    ]


def test_split_holdout(thurstone_agent, rng, all_pairs):
    data = thurstone_agent.pairs(all_pairs(thurstone_agent.n), 2, rng)
    h = holdout_pairs(thurstone_agent.n, seed=2)
    train, test = split_holdout(data, h)
    assert train.n_pairs + test.n_pairs == data.n_pairs
    assert set(test.keys().tolist()) == set((h[:, 0] * thurstone_agent.n + h[:, 1]).tolist())
    assert not set(train.keys().tolist()) & set(test.keys().tolist())


def test_bootstrap_intervals(make_agent, rng, all_pairs):
    agent = make_agent(rng.normal(size=20), np.ones(20))
    stats = agent.pairs(all_pairs(20), 3, rng)
    full = fit_thurstonian(stats)
    b = bootstrap_mu(stats, n_boot=16, seed=1, init=full)
    assert b.samples.shape == (16, 20)
    assert np.all(b.mu_lo <= b.mu_hi)
    assert np.mean((b.mu_lo <= full.mu) & (full.mu <= b.mu_hi)) >= 0.8
    again = bootstrap_mu(stats, n_boot=16, seed=1, init=full, batch_size=4)
    np.testing.assert_allclose(again.mu_lo, b.mu_lo, atol=5e-3)  # batched refits agree
    bt = bootstrap_mu(stats, n_boot=3, fit_batch=fit_bradley_terry_batch)
    assert np.isfinite(bt.mu_lo).all()
