"""Thurstonian estimator: golden cases, recovery from simulated agents, batch, torch, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import ndtr, ndtri
from scipy.stats import spearmanr

from fit import (
    DisconnectedGraphWarning,
    EmptyDataError,
    FitResult,
    NotConvergedWarning,
    PairStats,
    UnobservedOutcomesError,
    accuracy,
    fit_thurstonian,
    fit_thurstonian_batch,
    holdout_pairs,
    log_loss,
    predict_proba,
    split_holdout,
)


def _golden_stats() -> tuple[np.ndarray, PairStats]:
    """3 outcomes, labels exactly Φ((μᵢ − μⱼ)/√2) for μ = (−1, 0, 1.5): the fit must reproduce
    them exactly, since the cross-entropy is minimised where predictions equal the labels."""
    mu = np.array([-1.0, 0.0, 1.5])
    i, j = np.array([0, 0, 1]), np.array([1, 2, 2])
    return mu, PairStats(i, j, [3.0, 1.0, 2.0], ndtr((mu[i] - mu[j]) / np.sqrt(2)), 3)


def test_golden_homoscedastic_three_outcomes():
    mu, stats = _golden_stats()
    r = fit_thurstonian(stats, heteroscedastic=False, gtol=1e-9)
    expected = (mu - mu.mean()) / mu.std()
    np.testing.assert_allclose(r.mu, expected, atol=1e-5)
    np.testing.assert_allclose(r.scale, mu.std(), rtol=1e-5)  # raw σ² = 1 ⇒ raw μ = true μ
    np.testing.assert_allclose(r.sigma2, 1 / mu.std() ** 2, rtol=1e-5)
    np.testing.assert_allclose(predict_proba(r, stats.i, stats.j), stats.p, atol=1e-6)
    entropy = -(stats.p * np.log(stats.p) + (1 - stats.p) * np.log(1 - stats.p))
    assert r.loss == pytest.approx(float(stats.n @ entropy / stats.n.sum()), abs=1e-9)
    assert r.estimator == "thurstonian-homoscedastic" and r.converged


def test_golden_two_outcomes_by_hand():
    # Φ(Δ/√2) = 0.8 ⇒ Δ = √2 Φ⁻¹(0.8); normalised utilities are ∓1.
    r = fit_thurstonian(PairStats([0], [1], [5.0], [0.2], 2), heteroscedastic=False, gtol=1e-10)
    np.testing.assert_allclose(r.mu, [-1.0, 1.0], atol=1e-7)
    assert r.scale * 2 == pytest.approx(np.sqrt(2) * ndtri(0.8), rel=1e-5)


def test_heteroscedastic_prior_prefers_equal_variances_when_data_allow():
    # Consistent homoscedastic data: the exact fit with equal σ² costs no prior penalty.
    mu, stats = _golden_stats()
    r = fit_thurstonian(stats, gtol=1e-9)
    np.testing.assert_allclose(r.mu, (mu - mu.mean()) / mu.std(), atol=1e-3)
    np.testing.assert_allclose(r.sigma2 / r.sigma2.mean(), 1.0, atol=1e-3)
    np.testing.assert_allclose(predict_proba(r, stats.i, stats.j), stats.p, atol=1e-5)


def test_result_is_normalised(thurstone_agent, rng, all_pairs):
    r = fit_thurstonian(thurstone_agent.pairs(all_pairs(thurstone_agent.n), 3, rng))
    assert abs(r.mu.mean()) < 1e-9 and r.mu.std() == pytest.approx(1.0, abs=1e-9)
    assert r.sigma2 is not None and np.all(r.sigma2 > 0)
    assert r.converged and r.iterations > 0 and r.seconds > 0
    assert 0 < r.loss < np.log(2)


def test_recovery_and_holdout_accuracy(thurstone_agent, rng, all_pairs):
    agent = thurstone_agent
    holdout = holdout_pairs(agent.n, seed=7)
    data = agent.pairs(all_pairs(agent.n), 10, rng)
    train, test = split_holdout(data, holdout)
    assert test.n_pairs == len(holdout)
    r = fit_thurstonian(train)
    assert spearmanr(r.mu, agent.mu).statistic >= 0.98
    truth = FitResult(agent.mu, agent.sigma2, 0, True, 0.0, "thurstonian", 0.0)
    assert accuracy(r, test) >= accuracy(truth, test) - 0.02
    assert log_loss(r, test) <= log_loss(truth, test) + 0.02
    # Variances carry signal too: rank correlation with the truth clearly positive.
    assert spearmanr(r.sigma2, agent.sigma2).statistic > 0.3


def test_homoscedastic_recovery(make_agent, rng, all_pairs):
    agent = make_agent(rng.normal(size=80), np.ones(80))
    r = fit_thurstonian(agent.pairs(all_pairs(80), 5, rng), heteroscedastic=False)
    assert spearmanr(r.mu, agent.mu).statistic >= 0.98
    # Case V identifies the scale: raw utilities are on the true scale (σ² = 1).
    assert r.scale == pytest.approx(agent.mu.std(), rel=0.1)


def test_batch_equals_single_fits(thurstone_agent, make_agent, rng, all_pairs):
    other = make_agent(rng.normal(size=40), np.exp(rng.normal(scale=0.3, size=40)))
    pairs = all_pairs(thurstone_agent.n)
    a = thurstone_agent.pairs(pairs[rng.random(len(pairs)) < 0.3], 4, rng)
    b = other.pairs(all_pairs(40), 4, rng)
    batch = fit_thurstonian_batch([a, b, a])
    for single, joint in zip([fit_thurstonian(a), fit_thurstonian(b)], batch, strict=False):
        np.testing.assert_allclose(joint.mu, single.mu, atol=2e-3)
        np.testing.assert_allclose(joint.sigma2, single.sigma2, atol=2e-3, rtol=2e-3)
        assert joint.loss == pytest.approx(single.loss, abs=1e-7)
    np.testing.assert_allclose(batch[0].mu, batch[2].mu, atol=2e-3)


@pytest.mark.parametrize("heteroscedastic", [True, False])
def test_torch_equals_numpy(thurstone_agent, rng, all_pairs, heteroscedastic, torch_cpu):
    from fit.torch_backend import fit_thurstonian_batch_torch, fit_thurstonian_torch

    stats = thurstone_agent.pairs(all_pairs(thurstone_agent.n)[::2], 4, rng)
    ref = fit_thurstonian(stats, heteroscedastic=heteroscedastic)
    got = fit_thurstonian_torch(stats, heteroscedastic=heteroscedastic, device="cpu")
    np.testing.assert_allclose(got.mu, ref.mu, atol=2e-3)
    np.testing.assert_allclose(got.sigma2, ref.sigma2, atol=2e-3, rtol=2e-3)
    assert got.loss == pytest.approx(ref.loss, abs=1e-7)
    if heteroscedastic:
        two = fit_thurstonian_batch_torch([stats, stats])
        np.testing.assert_allclose(two[1].mu, ref.mu, atol=2e-3)


def test_warm_start_converges_fast(thurstone_agent, rng, all_pairs):
    stats = thurstone_agent.pairs(all_pairs(thurstone_agent.n)[::2], 4, rng)
    cold = fit_thurstonian(stats)
    warm = fit_thurstonian(stats, init=cold)
    assert warm.iterations < cold.iterations / 2
    np.testing.assert_allclose(warm.mu, cold.mu, atol=2e-3)


def test_unobserved_outcomes_error_names_them():
    stats = PairStats([0, 1], [1, 3], [1.0, 1.0], [0.7, 0.4], 5)
    with pytest.raises(UnobservedOutcomesError, match=r"2 of 5 outcomes.*\[2, 4\]") as info:
        fit_thurstonian(stats)
    assert info.value.indices == [2, 4]


def test_allow_unobserved_flags_them():
    stats = PairStats([0, 1], [1, 3], [1.0, 1.0], [0.7, 0.4], 5)
    r = fit_thurstonian(stats, allow_unobserved=True)
    assert r.observed is not None and r.observed.tolist() == [True, True, False, True, False]
    assert r.mu[2] == 0 and np.isinf(r.sigma2[2])
    assert predict_proba(r, [2, 0], [0, 4]).tolist() == [0.5, 0.5]
    assert r.mu[r.observed].std() == pytest.approx(1.0)


def test_empty_and_zero_weight_data():
    with pytest.raises(EmptyDataError):
        fit_thurstonian(PairStats([], [], [], [], 3))
    with pytest.raises(EmptyDataError, match="positive weight"):
        fit_thurstonian(PairStats([0], [1], [0.0], [0.5], 2))
    with pytest.raises(EmptyDataError):
        fit_thurstonian_batch([])


def test_disconnected_graph_warns():
    stats = PairStats([0, 2], [1, 3], [2.0, 2.0], [0.7, 0.6], 4)
    with pytest.warns(DisconnectedGraphWarning, match="2 connected components"):
        fit_thurstonian(stats)


def test_iteration_limit_warns(thurstone_agent, rng, all_pairs):
    stats = thurstone_agent.pairs(all_pairs(thurstone_agent.n)[::4], 4, rng)
    with pytest.warns(NotConvergedWarning, match="max_iter"):
        r = fit_thurstonian(stats, max_iter=3)
    assert not r.converged and r.iterations == 3


def test_separable_data_with_ridge_stays_finite():
    # Hard labels consistent with 0 < 1 < 2: the MLE diverges; a ridge keeps it finite.
    stats = PairStats([0, 0, 1], [1, 2, 2], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        r = fit_thurstonian(stats, l2=0.1)
    assert np.all(np.isfinite(r.mu)) and r.mu[0] < r.mu[1] < r.mu[2]


def test_bad_arguments():
    stats = PairStats([0], [1], [1.0], [0.6], 2)
    with pytest.raises(ValueError, match="eps"):
        fit_thurstonian(stats, eps=-1.0)
    with pytest.raises(ValueError, match="outcomes"):
        fit_thurstonian(
            stats, init=fit_thurstonian(PairStats([0, 1], [2, 2], [1.0, 1.0], [0.6, 0.3], 3))
        )


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_cuda_equals_numpy(thurstone_agent, rng, all_pairs, dtype):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from fit.torch_backend import fit_thurstonian_torch

    stats = thurstone_agent.pairs(all_pairs(thurstone_agent.n), 4, rng)
    ref = fit_thurstonian(stats)
    gtol, tol = (1e-6, 2e-3) if dtype == "float64" else (1e-4, 2e-2)
    got = fit_thurstonian_torch(stats, device="cuda", dtype=dtype, gtol=gtol)
    np.testing.assert_allclose(got.mu, ref.mu, atol=tol)
    assert got.loss == pytest.approx(ref.loss, abs=1e-5)
