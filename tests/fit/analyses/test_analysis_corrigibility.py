from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.corrigibility import (
    corrigibility,
    plot_corrigibility,
    reversals_from_attributes,
)


def test_resisting_agent_has_a_negative_slope():
    rng = np.random.default_rng(0)
    strength = rng.uniform(0, 3, 200)
    utility = 0.2 - 0.5 * strength + rng.normal(scale=0.05, size=200)
    res = corrigibility(strength, utility)
    assert res.n == 200
    assert res.slope == pytest.approx(-0.5, abs=0.02)
    assert res.intercept == pytest.approx(0.2, abs=0.05)
    assert res.pearson < -0.95 and res.spearman < -0.95


def test_from_attributes_and_bad_input():
    attrs = {
        "r1": {"kind": "reversal", "x": "a", "y": "b", "strength": 0.5},
        "r2": {"kind": "reversal", "x": "a", "y": "c", "strength": 1.5},
        "r3": {"kind": "reversal", "x": "b", "y": "c", "strength": 1.0},
        "a": {"category": "x"},
    }
    s, u = reversals_from_attributes(attrs, {"r1": 0.0, "r2": -1.0, "r3": -0.5, "a": 9.0})
    assert s.tolist() == [0.5, 1.5, 1.0] and u.tolist() == [0.0, -1.0, -0.5]
    assert corrigibility(s, u).slope == pytest.approx(-1.0)
    with pytest.raises(AnalysisInputError):
        corrigibility([1.0, 2.0], [1.0, 2.0])


def test_plot(tmp_path, check_png):
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 3, 50)
    res = corrigibility(s, -s + rng.normal(size=50))
    check_png(plot_corrigibility(res, tmp_path / "corr.png"))
