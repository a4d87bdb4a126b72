from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.power import POWER_TEMPLATE, plot_power, power_correlation


def test_overall_and_by_category():
    rng = np.random.default_rng(0)
    ids = [f"o{k}" for k in range(60)]
    pref = dict(zip(ids, rng.normal(size=60).tolist(), strict=True))
    cats = {i: ("align" if k < 30 else "oppose") for k, i in enumerate(ids)}
    power = {i: (pref[i] if cats[i] == "align" else -pref[i]) + 0.01 * rng.normal() for i in ids}
    res = power_correlation(pref, power, cats)
    by = {c.category: c for c in res.by_category}
    assert by["align"].pearson > 0.99 and by["align"].spearman > 0.99
    assert by["oppose"].pearson < -0.99 and by["oppose"].n == 30
    assert res.n == 60 and abs(res.pearson) < 0.5


def test_only_common_outcomes_and_no_categories():
    res = power_correlation({"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.0}, {"a": 1, "b": 2, "c": 4})
    assert res.outcome_ids == ("a", "b", "c") and res.spearman == pytest.approx(1.0)
    assert res.by_category == ()
    with pytest.raises(AnalysisInputError):
        power_correlation({"a": 1.0}, {"a": 1.0})


def test_template_has_both_placeholders():
    assert POWER_TEMPLATE.format(option_a="X", option_b="Y").count("X") == 1
    assert "{option_b}" in POWER_TEMPLATE


def test_plot(tmp_path, check_png):
    rng = np.random.default_rng(1)
    ids = [f"o{k}" for k in range(40)]
    pref = dict(zip(ids, rng.normal(size=40).tolist(), strict=True))
    power = dict(zip(ids, rng.normal(size=40).tolist(), strict=True))
    cats = {i: f"c{k % 3}" for k, i in enumerate(ids)}
    check_png(plot_power(power_correlation(pref, power, cats), tmp_path / "power.png"))
