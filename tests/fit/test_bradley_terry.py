"""Bradley–Terry estimator: golden cases, recovery, batch, torch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import spearmanr

from fit import (
    FitResult,
    PairStats,
    accuracy,
    fit_bradley_terry,
    fit_bradley_terry_batch,
    holdout_pairs,
    predict_proba,
    split_holdout,
)


def test_golden_two_outcomes():
    r = fit_bradley_terry(PairStats([0], [1], [4.0], [0.8], 2), gtol=1e-10)
    np.testing.assert_allclose(r.mu, [1.0, -1.0], atol=1e-7)
    assert 2 * r.scale == pytest.approx(logit(0.8), rel=1e-6)
    assert r.sigma2 is None and r.estimator == "bradley-terry"


def test_golden_consistent_logits_are_reproduced():
    theta = np.array([0.0, 1.0, 3.0])
    i, j = np.array([0, 0, 1]), np.array([1, 2, 2])
    stats = PairStats(i, j, [2.0, 5.0, 1.0], expit(theta[i] - theta[j]), 3)
    r = fit_bradley_terry(stats, gtol=1e-10)
    np.testing.assert_allclose(r.mu * r.scale, theta - theta.mean(), atol=1e-6)
    np.testing.assert_allclose(predict_proba(r, i, j), stats.p, atol=1e-8)


def test_recovery_and_holdout(make_agent, rng, all_pairs):
    agent = make_agent(rng.normal(scale=1.5, size=120), None)
    train, test = split_holdout(agent.pairs(all_pairs(120), 6, rng), holdout_pairs(120, seed=3))
    r = fit_bradley_terry(train)
    assert spearmanr(r.mu, agent.mu).statistic >= 0.98
    assert r.scale == pytest.approx(agent.mu.std(), rel=0.1)  # logistic scale is identified
    truth = FitResult(
        (agent.mu - agent.mu.mean()) / agent.mu.std(),
        None,
        0,
        True,
        0.0,
        "bradley-terry",
        0.0,
        scale=agent.mu.std(),
    )
    assert accuracy(r, test) >= accuracy(truth, test) - 0.02


def test_batch_and_torch_equal_single(make_agent, rng, all_pairs, torch_cpu):
    from fit.torch_backend import fit_bradley_terry_torch

    a = make_agent(rng.normal(size=50), None).pairs(all_pairs(50), 3, rng)
    b = make_agent(rng.normal(size=30), None).pairs(all_pairs(30), 3, rng)
    singles = [fit_bradley_terry(a), fit_bradley_terry(b)]
    for single, joint in zip(singles, fit_bradley_terry_batch([a, b]), strict=True):
        np.testing.assert_allclose(joint.mu, single.mu, atol=1e-4)
        assert joint.scale == pytest.approx(single.scale, rel=1e-4)
    t = fit_bradley_terry_torch(a)
    np.testing.assert_allclose(t.mu, singles[0].mu, atol=1e-4)
