from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.expected_utility import (
    Lottery,
    compare,
    expected_utility,
    lotteries_from_attributes,
    plot_expected_utility,
)


def make_lotteries(n_base: int = 60, n_lotteries: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = {f"o{k}": float(u) for k, u in enumerate(rng.normal(size=n_base))}
    lotteries = []
    for k in range(n_lotteries):
        size = int(rng.integers(2, 4))
        comps = rng.choice(n_base, size=size, replace=False)
        probs = rng.dirichlet(np.ones(size))
        lotteries.append(Lottery(f"L{k}", tuple(f"o{c}" for c in comps), tuple(probs)))
    return rng, base, lotteries


def test_expected_utility_maximiser():
    rng, base, lotteries = make_lotteries()
    utilities = dict(base)
    for lot in lotteries:
        eu = sum(p * base[o] for o, p in zip(lot.outcomes, lot.probs, strict=True))
        utilities[lot.id] = eu + rng.normal(scale=0.005)
    res = expected_utility(lotteries, utilities)
    assert res.n_lotteries == 100 and res.n_lottery_pairs == 100 * 99 // 2
    assert res.pearson_r > 0.99
    assert res.violation_rate < 0.02
    assert res.mae_z < 0.05


def test_affine_rescaling_changes_nothing_but_noise_does():
    _, base, lotteries = make_lotteries(seed=1)
    exact = dict(base)
    for lot in lotteries:
        exact[lot.id] = (
            3.0 * sum(p * base[o] for o, p in zip(lot.outcomes, lot.probs, strict=True)) - 2.0
        )
    res = expected_utility(lotteries, exact)
    assert res.pearson_r == pytest.approx(1.0) and res.mae_z == pytest.approx(0.0, abs=1e-12)
    assert res.violation_rate == 0.0
    rng = np.random.default_rng(5)
    random = dict(base) | {lot.id: float(rng.normal()) for lot in lotteries}
    bad = expected_utility(lotteries, random)
    assert abs(bad.violation_rate - 0.5) < 0.1 and abs(bad.pearson_r) < 0.3


def test_violation_rate_counts_discordant_pairs():
    res = compare(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert res.violation_rate == pytest.approx(1 / 6)


def test_lotteries_from_attributes_and_implicit_events():
    attrs = {
        "ev": {"kind": "event", "components": ["a", "b"], "probs": [0.25, 0.75]},
        "lot": {"kind": "lottery", "components": ["a", "c"], "probs": [0.5, 0.5]},
        "a": {"kind": "sub_outcome"},
        "x": {"category": "health"},
    }
    lots = {lot.id: lot for lot in lotteries_from_attributes(attrs)}
    assert set(lots) == {"ev", "lot"}
    assert lots["ev"].probs == (0.25, 0.75)


def test_bad_lotteries():
    with pytest.raises(AnalysisInputError, match="sum to 1"):
        Lottery("L", ("a", "b"), (0.5, 0.6))
    with pytest.raises(AnalysisInputError, match="one probability per outcome"):
        Lottery("L", ("a", "b"), (1.0,))
    _, base, lotteries = make_lotteries(n_lotteries=5)
    with pytest.raises(AnalysisInputError, match="no value"):
        expected_utility(lotteries, base)


def test_plot(tmp_path, check_png):
    rng, base, lotteries = make_lotteries()
    utilities = dict(base) | {lot.id: float(rng.normal()) for lot in lotteries}
    res = expected_utility(lotteries, utilities)
    check_png(plot_expected_utility(res, tmp_path / "eu.png"))
