from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.completeness import completeness, plot_completeness


def test_indifferent_and_decisive_extremes():
    flat = completeness(np.full(10, 0.5))
    assert flat.decisiveness == 0.0 and flat.near_indifferent_share == 1.0
    sure = completeness(np.array([0.0, 1.0, 1.0, 0.0]))
    assert sure.decisiveness == 1.0 and sure.near_indifferent_share == 0.0


def test_known_mix_weights_and_missing():
    res = completeness(np.array([0.55, 0.9, 0.1, np.nan]), indifference_band=0.1)
    assert res.n_pairs == 3 and res.n_missing == 1
    assert res.decisiveness == pytest.approx((0.1 + 0.8 + 0.8) / 3)
    assert res.near_indifferent_share == pytest.approx(1 / 3)
    weighted = completeness(np.array([0.55, 0.9]), weights=np.array([3.0, 1.0]))
    assert weighted.decisiveness == pytest.approx((3 * 0.1 + 0.8) / 4)


def test_bad_inputs():
    with pytest.raises(AnalysisInputError):
        completeness(np.array([np.nan]))
    with pytest.raises(AnalysisInputError):
        completeness(np.array([1.5]))
    with pytest.raises(AnalysisInputError):
        completeness(np.array([0.5]), indifference_band=0.0)


def test_plot(tmp_path, check_png):
    p = np.random.default_rng(0).random(500)
    check_png(plot_completeness(completeness(p), tmp_path / "completeness.png"))
