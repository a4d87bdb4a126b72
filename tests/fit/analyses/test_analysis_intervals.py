"""The 95 % intervals of the analyses: closed forms, the outcome bootstrap, coverage on planted
populations (benchmarks/interval_coverage.py at a reduced number of studies)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from fit.analyses.intervals import (
    fisher,
    outcome_weights,
    slope_interval,
    weighted_mean_interval,
    wilson,
    with_intervals,
)

BENCH = Path(__file__).parents[3] / "benchmarks" / "interval_coverage.py"


def _bench():
    spec = importlib.util.spec_from_file_location("interval_coverage", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wilson_and_fisher_match_their_formulas():
    lo, hi = wilson(44, 44)  # the critique's 44 of 44 second-listed picks
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.9197, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))
    lo, hi = fisher(0.5, 28)
    z = math.atanh(0.5)
    assert lo == pytest.approx(math.tanh(z - 1.959964 / 5), abs=1e-6)
    assert hi == pytest.approx(math.tanh(z + 1.959964 / 5), abs=1e-6)
    assert math.isnan(fisher(0.9, 3)[0])  # three points say nothing
    rank_lo, _ = fisher(0.5, 28, rank=True)
    assert rank_lo < lo  # Spearman's variance is larger


def test_slope_interval_contains_the_planted_slope():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.7 * x + rng.normal(scale=0.3, size=40)
    lo, hi = slope_interval(x, y)
    assert lo < 0.7 < hi and hi - lo < 0.3


def test_outcome_weights_drop_items_whose_outcome_was_not_drawn():
    members = np.array([[0, 1], [1, 2], [0, 2]])
    w = outcome_weights(members, 3, n_boot=500, seed=1)
    counts_zero = w == 0
    assert counts_zero.any() and (w >= 0).all()
    # A value carried by one pair moves the replicates; a constant does not.
    assert weighted_mean_interval(np.ones(3), w) == (1.0, 1.0)
    lo, hi = weighted_mean_interval(np.array([1.0, 0.0, 0.0]), w)
    assert lo < 1 / 3 < hi


def test_intervals_sit_next_to_their_estimate():
    row = with_intervals({"a": 1.0, "b": 2.0, "n": 3}, {"a": (0.5, 1.5), "c": (float("nan"), 1)})
    assert list(row) == ["a", "a_lo", "a_hi", "b", "n", "c_lo", "c_hi"]
    assert row["c_lo"] is None and row["c_hi"] == 1.0


def test_coverage_on_planted_populations():
    """Each interval method contains the population value in most of 60 planted studies
    (the full figures, 400 studies each, are in docs/analyses.md)."""
    bench = _bench()
    for name, check in (
        ("transitivity", lambda r: bench.transitivity(r, 12)),
        ("decisiveness", lambda r: bench.decisiveness(r, 12)),
        ("spearman", lambda r: bench.correlation(r, 12, rank=True)),
        ("lotteries", lambda r: bench.lotteries(r, 10)),
    ):
        coverage = check(60)
        assert 0.85 <= coverage <= 1.0, (name, coverage)
