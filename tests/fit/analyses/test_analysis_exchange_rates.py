from __future__ import annotations

import math

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.exchange_rates import exchange_rates, plot_exchange_rates, points_from_attributes

NS = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], dtype=float)


def ladder(params: dict[str, tuple[float, float]], noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ent, n, mu = [], [], []
    for name, (a, b) in params.items():
        ent += [name] * len(NS)
        n += NS.tolist()
        mu += (a * np.log(NS) + b + rng.normal(scale=noise, size=len(NS))).tolist()
    return np.array(ent), np.array(n), np.array(mu)


def test_built_in_three_to_one_rate_is_recovered():
    # One unit of X is worth exactly three units of Y; Z has another slope.
    a = 0.4
    params = {"X": (a, a * math.log(3.0)), "Y": (a, 0.0), "Z": (0.6, -0.5)}
    ent, n, mu = ladder(params, noise=0.02, seed=1)
    res = exchange_rates(ent, n, mu, pivot="Y", n_boot=1000, seed=0)
    k = res.entities.index("X")
    assert res.pivot == "Y"
    assert res.rate[k] == pytest.approx(3.0, rel=0.1)
    assert res.rate_lo[k] <= 3.0 <= res.rate_hi[k]
    assert res.rate_lo[k] > 2.0 and res.rate_hi[k] < 4.5  # the interval is informative
    assert res.rate_between("X", "Y") == pytest.approx(res.rate[k])
    assert res.rate[res.entities.index("Y")] == pytest.approx(1.0)
    assert res.excluded == ()


def test_bootstrap_intervals_cover_the_true_rate_in_repeated_experiments():
    # A pairs bootstrap over ten points per entity runs a little narrow (about 85% coverage at
    # a nominal 95%); guard against anything much worse.
    a = 0.4
    params = {"X": (a, a * math.log(3.0)), "Y": (a, 0.0)}
    covered, estimates = [], []
    for seed in range(50):
        ent, n, mu = ladder(params, noise=0.02, seed=seed)
        res = exchange_rates(ent, n, mu, pivot="Y", n_boot=400, seed=seed)
        covered.append(res.rate_lo[0] <= 3.0 <= res.rate_hi[0])
        estimates.append(res.rate[0])
    assert np.mean(covered) >= 0.75
    assert np.median(estimates) == pytest.approx(3.0, rel=0.02)


def test_rate_formula_and_reciprocity_without_noise():
    params = {"A": (0.5, 1.0), "B": (0.8, 0.2), "C": (0.3, -0.4)}
    ent, n, mu = ladder(params, noise=0.0)
    res = exchange_rates(ent, n, mu, n_boot=0)
    np.testing.assert_allclose(res.slope, [0.5, 0.8, 0.3])
    np.testing.assert_allclose(res.intercept, [1.0, 0.2, -0.4], atol=1e-12)
    direct = math.exp((1.0 - 0.2) / 0.8)  # units of B equal to one A
    inverse_reverse = 1.0 / math.exp((0.2 - 1.0) / 0.5)
    assert res.rate_between("A", "B") == pytest.approx(math.sqrt(direct * inverse_reverse))
    np.testing.assert_allclose(res.rate_matrix * res.rate_matrix.T, 1.0)
    assert np.isnan(res.rate_lo).all()


def test_negative_slopes_are_flagged_and_skipped():
    params = {"good": (0.5, 0.0), "ok": (0.3, 0.1), "bad": (-0.2, 0.0)}
    ent, n, mu = ladder(params, noise=0.01)
    res = exchange_rates(ent, n, mu, n_boot=200)
    assert res.excluded == ("bad",)
    k = res.entities.index("bad")
    assert not res.valid[k] and np.isnan(res.rate[k]) and np.isnan(res.rate_lo[k])
    with pytest.raises(AnalysisInputError, match="choose another pivot"):
        exchange_rates(ent, n, mu, pivot="bad")


def test_bootstrap_is_seeded():
    ent, n, mu = ladder({"X": (0.4, 0.3), "Y": (0.5, 0.0)}, noise=0.05)
    r1 = exchange_rates(ent, n, mu, n_boot=300, seed=7)
    r2 = exchange_rates(ent, n, mu, n_boot=300, seed=7)
    np.testing.assert_array_equal(r1.rate_lo, r2.rate_lo)


def test_points_from_attributes():
    attrs = {
        "a1": {"kind": "exchange", "entity": "A", "n": 1, "measure": "cured"},
        "a2": {"kind": "exchange", "entity": "A", "n": 10, "measure": "cured"},
        "b1": {"kind": "exchange", "entity": "B", "n": 1, "measure": "spared"},
        "m1": {"kind": "money", "entity": "money", "n": 100, "measure": "money"},
        "other": {"kind": "lottery"},
    }
    util = {"a1": 0.1, "a2": 0.5, "b1": 0.0, "m1": 0.2}
    ent, n, mu = points_from_attributes(attrs, util, measure="cured")
    assert ent.tolist() == ["A", "A", "money"] and n.tolist() == [1, 10, 100]


def test_plot(tmp_path, check_png):
    ent, n, mu = ladder({"X": (0.4, 0.3), "Y": (0.5, 0.0), "W": (-0.1, 0)}, noise=0.05)
    res = exchange_rates(ent, n, mu, pivot="Y", n_boot=100)
    check_png(plot_exchange_rates(res, tmp_path / "xr.png"))
