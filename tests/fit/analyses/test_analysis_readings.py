"""Readings that hold: the transitive floor, spreads within one good, flagged PCA, the
supported discounting label, and the ladder / order diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from fit.analyses.diagnostics import monotonicity, order_effect
from fit.analyses.exchange_rates import exchange_rates, rate_spreads
from fit.analyses.political import political_pca
from fit.analyses.time_discounting import intervals as discount_intervals
from fit.analyses.time_discounting import time_discounting
from fit.analyses.transitivity import sample_triads, transitive_floor, transitivity


def test_a_transitive_noisy_agent_sits_on_its_floor():
    rng = np.random.default_rng(0)
    mu, s2 = rng.normal(size=15), np.full(15, 0.5)
    m = ndtr((mu[:, None] - mu[None, :]) / np.sqrt(s2[:, None] + s2[None, :]))
    triads = sample_triads(15, 455)
    res = transitivity(m, triads)
    floor = transitive_floor(triads, mu, s2)
    assert res.mean_cycle_prob > 0.05  # far from 0, yet the agent is transitive
    assert floor.mean() == pytest.approx(res.mean_cycle_prob, rel=1e-9)
    assert res.hard_cycle_rate == 0.0
    # Position bias pulls folded probabilities to ½ and raises the floor.
    assert transitive_floor(triads, mu, s2, position_bias=2.0).mean() > 2 * floor.mean()


def test_spreads_leave_money_out_and_stay_within_a_good():
    ents = np.repeat(["chickens", "pigs", "france", "japan", "money"], 4)
    n = np.tile([1.0, 10.0, 100.0, 1000.0], 5)
    b = {"chickens": 0.0, "pigs": np.log(3), "france": 2.0, "japan": 2.0 + np.log(10),
         "money": -5.0}  # fmt: skip
    mu = 1.0 * np.log(n) + np.array([b[e] for e in ents])
    res = exchange_rates(ents, n, mu, n_boot=200)
    groups = {"chickens": "animals", "pigs": "animals", "france": "countries",
              "japan": "countries", "money": "money"}  # fmt: skip
    spreads = {g["group"]: g for g in rate_spreads(res, groups)}
    assert set(spreads) == {"animals", "countries"}
    assert spreads["animals"]["log10_spread"] == pytest.approx(np.log10(3), abs=1e-6)
    assert spreads["countries"]["log10_spread"] == pytest.approx(1.0, abs=1e-6)


def test_pca_flags_identical_agents_and_two():
    same = political_pca({"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0, 2.0], "c": [0.0, 1.0, 2.0]})
    assert np.isnan(same.explained_variance_ratio[0])  # not "PC1 explains 100 %"
    assert same.note and "identical utilities" in same.note
    two = political_pca({"a": [0.0, 1.0, 2.0, 3.0], "b": [3.0, 1.0, 0.0, 2.0]})
    assert two.explained_variance_ratio[0] == pytest.approx(1.0)
    assert two.note and "two agents" in two.note
    rng = np.random.default_rng(1)
    many = political_pca({f"x{k}": rng.normal(size=12) for k in range(6)}, n_boot=200)
    assert many.note is None
    for c in range(2):
        lo, hi = many.explained_ci[c]
        assert lo <= many.explained_variance_ratio[c] <= hi < 1.0
        # Every agent's coordinate lies in its interval (signs aligned with the estimate).
        inside = (many.pc_ci[:, c, 0] <= many.coords[:, c]) & (
            many.coords[:, c] <= many.pc_ci[:, c, 1]
        )
        assert inside.all()


def _grid(curve, jitter=0.0):
    delays = np.array([1, 3, 6, 12, 24, 60], dtype=float)
    amounts = np.geomspace(500, 30000, 15)
    t, x = np.meshgrid(delays, amounts, indexing="ij")
    wobble = np.exp(jitter * np.random.default_rng(3).normal(size=(6, 1)))
    x_star = 1000.0 / curve(t) * wobble
    return t.ravel(), x.ravel(), ndtr(3 * np.log(x / x_star)).ravel()


def test_discounting_choice_needs_its_interval():
    res = time_discounting(*_grid(lambda t: np.exp(-0.03 * t)))
    lo, hi = discount_intervals(res)["rmse_difference"]
    assert res.better == "exponential" and hi < 0  # supported
    # Indifference points scattered around a slow discount: either curve fits as badly.
    noisy = time_discounting(*_grid(lambda t: np.exp(-0.005 * t), jitter=0.3))
    lo, hi = discount_intervals(noisy)["rmse_difference"]
    assert noisy.better in ("exponential", "hyperbolic") and lo <= 0 <= hi


def test_order_effect_and_monotonicity_diagnostics():
    rng = np.random.default_rng(2)
    d = rng.uniform(-2, 2, 400)
    p_first = ndtr(d - 1.0)  # second-listed favoured
    eff = order_effect(p_first, d)
    assert eff.second_share > 0.8 and eff.second_share_ci[0] > 0.6
    fair = order_effect(ndtr(d), d)
    assert fair.second_share_ci[0] < 0.5 < fair.second_share_ci[1]
    ladder = np.repeat([f"e{k}" for k in range(8)], 5)
    level = np.tile([1.0, 2, 3, 4, 5], 8)
    mono = monotonicity(ladder, level, level + 0.0, seed=0)
    assert mono.share == 1.0 and mono.n_steps == 32
    bent = np.where(level > 3, -level, level)  # falls after the third rung
    m2 = monotonicity(ladder, level, bent, seed=0)
    assert m2.share == pytest.approx(0.5) and m2.share_ci[1] < 1.0
    down = monotonicity(ladder, level, -level, increasing=False)
    assert down.share == 1.0
