"""Position-bias fits: β and its interval recovered from simulated agents, both links."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from fit import fit_position, predict_first


@pytest.mark.parametrize("interval", ["sandwich", "hessian"])
def test_thurstonian_beta_recovered_within_interval(make_agent, rng, all_pairs, interval):
    n = 50
    agent = make_agent(rng.normal(size=n), np.exp(rng.normal(scale=0.3, size=n)), beta=0.3)
    pos = fit_position(agent.oriented(all_pairs(n), 4, rng), interval=interval)
    # β is reported on the normalised utility scale: divide the truth by sd(μ).
    true_beta = agent.beta / agent.mu.std()
    assert pos.beta_lo <= true_beta <= pos.beta_hi
    assert pos.beta_lo < pos.beta < pos.beta_hi and pos.beta_se > 0
    assert pos.beta_hi - pos.beta_lo < 0.3  # informative, not vacuous
    assert spearmanr(pos.fit.mu, agent.mu).statistic >= 0.98
    assert pos.interval == interval and pos.level == 0.95


def test_bradley_terry_beta_in_logits(make_agent, rng, all_pairs):
    n = 50
    agent = make_agent(rng.normal(size=n), None, beta=-0.4)
    pos = fit_position(agent.oriented(all_pairs(n), 4, rng), estimator="bradley-terry")
    # On the reported scale β·scale is the logit shift.
    lo, hi = pos.beta_lo * pos.fit.scale, pos.beta_hi * pos.fit.scale
    assert lo <= agent.beta <= hi


def test_no_bias_gives_interval_around_zero(make_agent, rng, all_pairs):
    agent = make_agent(rng.normal(size=40), np.ones(40), beta=0.0)
    pos = fit_position(agent.oriented(all_pairs(40), 4, rng))
    assert pos.beta_lo <= 0.0 <= pos.beta_hi


def test_predict_first_includes_bias(make_agent, rng, all_pairs):
    agent = make_agent(rng.normal(size=30), np.ones(30), beta=0.5)
    pos = fit_position(agent.oriented(all_pairs(30), 4, rng))
    p_ab = predict_first(pos, [0], [1])[0]
    p_ba = predict_first(pos, [1], [0])[0]
    assert p_ab + p_ba > 1.0  # both orders favour the first-listed outcome


def test_bad_arguments(make_agent, rng, all_pairs):
    o = make_agent(rng.normal(size=5), np.ones(5)).oriented(all_pairs(5), 2, rng)
    with pytest.raises(ValueError, match="estimator"):
        fit_position(o, estimator="probit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        fit_position(o, level=1.5)
