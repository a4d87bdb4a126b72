"""Held-out metrics per presented order (each order predicted with the fit's β) and the
position-only baseline they are judged against (fit.holdout).

Guards: a position-bias fit scored without its β (the stored 0.681 against 0.628 of the plain
fit at β = 2) fails ``test_beta_is_used_for_each_order``; a baseline fitted on the held-out
rows, or one that ignores the counts, fails ``test_baseline_is_the_training_share_of_first``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, ndtr

from fit import fit_position, fit_thurstonian, fold
from fit.errors import EmptyDataError, FitError
from fit.holdout import (
    UTILITY_MARGIN,
    baseline_beta,
    baseline_score,
    oriented_score,
    position_baseline,
    utility_gain,
)
from fit.metrics import log_loss
from fit.result import BRADLEY_TERRY, THURSTONIAN, FitResult
from fit.stats import OrientedStats


def _result(mu, sigma2=None, estimator=THURSTONIAN, scale=1.0) -> FitResult:
    mu = np.asarray(mu, dtype=float)
    s2 = None if sigma2 is None else np.asarray(sigma2, dtype=float)
    return FitResult(mu, s2, 1, True, 0.0, estimator, 0.0, scale=scale)


def test_oriented_score_by_hand():
    """Three presentations of two outcomes; probit with σ² = ½ each, so z = μ_f − μ_s + β."""
    fit = _result([0.5, -0.5], [0.5, 0.5])
    data = OrientedStats([0, 1, 1], [1, 0, 0], [1, 1, 1], [0.9, 0.2, 0.5], 2)
    beta = 0.3
    score = oriented_score(fit, data, beta)
    q = ndtr(np.array([1.0 + beta, -1.0 + beta, -1.0 + beta]))
    label = np.array([0.9, 0.2, 0.5])
    expected = -(label * np.log(q) + (1 - label) * np.log(1 - q))
    assert score.log_loss == pytest.approx(expected.mean(), rel=1e-9)
    assert score.accuracy == 1.0 and score.n == 3  # the label of exactly ½ is left out
    # a β that cancels the difference earns half a point
    assert oriented_score(fit, data, 1.0).accuracy == pytest.approx(0.75)
    bt = _result([0.5, -0.5], estimator=BRADLEY_TERRY, scale=2.0)
    p = expit(2.0 * (1.0 + beta))
    assert oriented_score(bt, OrientedStats([0], [1], [1], [1.0], 2), beta).log_loss == (
        pytest.approx(-np.log(p))
    )


def test_beta_is_used_for_each_order(make_agent, rng, all_pairs):
    """At β = 2 a position-bias fit predicts each held-out order far better than a plain fit;
    dropping its β from the prediction throws that away (the bug the issue measured)."""
    n = 40
    agent = make_agent(rng.normal(size=n), np.full(n, 0.5), beta=2.0)
    pairs = all_pairs(n)
    pick = rng.permutation(len(pairs))
    train = agent.oriented(pairs[pick[:500]], 1, rng)
    held = agent.oriented(pairs[pick[500:700]], 1, rng)
    pb = fit_position(train)
    plain = fit_thurstonian(fold(train))
    with_beta = oriented_score(pb.fit, held, pb.beta)
    without = oriented_score(pb.fit, held, 0.0)
    no_term = oriented_score(plain, held)
    base = baseline_score(position_baseline(train), held)
    assert with_beta.log_loss < no_term.log_loss - 0.1
    assert with_beta.log_loss < without.log_loss - 0.1
    assert with_beta.log_loss < base.log_loss - UTILITY_MARGIN
    assert with_beta.accuracy > base.accuracy
    # the order-averaged figure of the fit without β is the misleading one
    assert with_beta.log_loss < log_loss(pb.fit, fold(held))


def test_baseline_is_the_training_share_of_first():
    train = OrientedStats([0, 1, 2], [1, 2, 0], [3, 1, 0], [0.9, 0.1, 0.0], 3)
    q = position_baseline(train)
    assert q == pytest.approx((3 * 0.9 + 0.1) / 4)
    assert baseline_beta(q) == pytest.approx(ndtr_inv(q))
    held = OrientedStats([0, 1], [2, 0], [1, 1], [1.0, 0.2], 3)
    score = baseline_score(q, held)
    assert score.accuracy == 0.5  # predicts "first" everywhere: right once, wrong once
    expected = -np.log(q) - (0.2 * np.log(q) + 0.8 * np.log(1 - q))
    assert score.log_loss == pytest.approx(expected / 2)
    assert baseline_score(0.5, held).accuracy == 0.5  # a coin earns half a point each


def ndtr_inv(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def test_a_position_only_agent_gains_nothing(make_agent, rng, all_pairs):
    """Equal utilities and a large β: the utilities cannot beat position alone by the margin."""
    n = 30
    agent = make_agent(np.zeros(n), np.full(n, 0.5), beta=1.5)
    pairs = all_pairs(n)
    pick = rng.permutation(len(pairs))
    train = agent.oriented(pairs[pick[:300]], 1, rng)
    held = agent.oriented(pairs[pick[300:]], 1, rng)
    pb = fit_position(train)
    gain = utility_gain(
        oriented_score(pb.fit, held, pb.beta).log_loss,
        baseline_score(position_baseline(train), held).log_loss,
    )
    assert gain is not None and gain < UTILITY_MARGIN


def test_bad_input():
    fit = _result([0.0, 1.0], [1.0, 1.0])
    empty = OrientedStats([], [], [], [], 2)
    with pytest.raises(EmptyDataError, match="no presentations"):
        oriented_score(fit, empty)
    with pytest.raises(EmptyDataError, match="no training presentations"):
        position_baseline(empty)
    data = OrientedStats([0], [1], [1], [1.0], 2)
    with pytest.raises(FitError, match="data has 3"):
        oriented_score(fit, OrientedStats([0], [1], [1], [1.0], 3))
    with pytest.raises(FitError, match="finite"):
        oriented_score(fit, data, float("nan"))
    with pytest.raises(FitError, match=r"\(0, 1\)"):
        baseline_score(1.0, data)
    assert utility_gain(None, 0.5) is None and utility_gain(0.3, 0.5) == pytest.approx(0.2)
