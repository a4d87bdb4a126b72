from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from fit.analyses import AnalysisInputError
from fit.analyses.transitivity import (
    cycle_probability,
    plot_transitivity,
    probability_matrix,
    sample_triads,
    transitivity,
    triad_pairs,
)


def thurstonian_matrix(n: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    sd = np.sqrt(2.0) * noise
    return norm.cdf((mu[:, None] - mu[None, :]) / sd)


def random_matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)), k=1)
    return upper + np.tril(1.0 - upper.T, k=-1) + 0.5 * np.eye(n)


def test_sample_triads_unique_sorted_and_seeded():
    t = sample_triads(50, 1000, seed=3)
    assert t.shape == (1000, 3)
    assert np.all((t[:, 0] < t[:, 1]) & (t[:, 1] < t[:, 2]))
    assert len(np.unique(t, axis=0)) == 1000
    assert np.array_equal(t, sample_triads(50, 1000, seed=3))
    assert not np.array_equal(t, sample_triads(50, 1000, seed=4))


def test_sample_triads_small_set_gives_every_triad():
    t = sample_triads(6, 1000)
    assert len(t) == math.comb(6, 3)
    assert len(np.unique(t, axis=0)) == len(t)


def test_triad_pairs_are_the_unique_pairs():
    i, j = triad_pairs(np.array([[0, 1, 2], [1, 2, 3]]))
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 2),
        (1, 3),
        (2, 3),
    ]


def test_transitive_low_noise_agent_sits_at_the_noise_floor():
    p = thurstonian_matrix(80, noise=0.05)
    res = transitivity(p, n_triads=1000, seed=0)
    rand = transitivity(random_matrix(80), n_triads=1000, seed=0)
    assert res.n_triads == 1000
    assert res.mean_cycle_prob < 0.02
    assert res.hard_cycle_rate == 0.0  # majority preferences follow the utility order
    assert abs(rand.mean_cycle_prob - 0.25) < 0.03
    assert abs(rand.hard_cycle_rate - 0.25) < 0.05
    assert res.mean_cycle_prob < rand.mean_cycle_prob / 10


def test_more_noise_means_more_cycles():
    low = transitivity(thurstonian_matrix(60, 0.05), n_triads=500).mean_cycle_prob
    high = transitivity(thurstonian_matrix(60, 1.0), n_triads=500).mean_cycle_prob
    assert low < high < 0.25


def test_deterministic_cycle_and_indifference():
    assert cycle_probability([1.0], [1.0], [1.0])[0] == 1.0
    assert cycle_probability([0.5], [0.5], [0.5])[0] == pytest.approx(0.25)
    # a ≻ b ≻ c ≻ a for sure
    p = probability_matrix([0, 1, 0], [1, 2, 2], [1.0, 1.0, 0.0], 3)
    res = transitivity(p, np.array([[0, 1, 2]]))
    assert res.mean_cycle_prob == 1.0 and res.hard_cycle_rate == 1.0


def test_function_input_matches_matrix_input():
    p = thurstonian_matrix(30, 0.3)
    triads = sample_triads(30, 200, seed=1)
    by_matrix = transitivity(p, triads)
    by_function = transitivity(lambda i, j: p[i, j], triads)
    np.testing.assert_allclose(by_matrix.cycle_prob, by_function.cycle_prob)


def test_unmeasured_pairs_are_skipped():
    p = probability_matrix([0, 1, 0], [1, 2, 2], [0.9, 0.9, 0.9], 4)
    res = transitivity(p, np.array([[0, 1, 2], [1, 2, 3]]))
    assert res.n_triads == 1 and res.n_skipped == 1


def test_inconsistent_matrix_is_rejected():
    p = np.full((3, 3), 0.9)
    with pytest.raises(AnalysisInputError, match="must equal 1"):
        transitivity(p)


def test_plot(tmp_path, check_png):
    res = transitivity(thurstonian_matrix(30, 0.5), n_triads=300)
    check_png(plot_transitivity(res, tmp_path / "fig" / "transitivity.png"))
