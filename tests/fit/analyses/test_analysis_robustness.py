from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.robustness import (
    PARAPHRASE_TEMPLATES,
    paraphrase_sensitivity,
    plot_paraphrase_sensitivity,
    plot_position_bias,
    plot_response_quality,
    position_bias,
    response_quality,
)


def oriented_rows(shift: float, seed: int = 0):
    """Both orders of 200 pairs; P(first) = Φ-like logistic of Δμ plus a first-position shift."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=200)
    p_first = 1 / (1 + np.exp(-np.concatenate([d, -d]) - shift))
    return p_first


def test_position_bias_per_model():
    model = np.array(["fair"] * 400 + ["first-lover"] * 400)
    p = np.concatenate([oriented_rows(0.0), oriented_rows(1.5, seed=1)])
    p[0] = np.nan  # a failed row is ignored
    res = position_bias(model, p)
    assert res.models == ("fair", "first-lover")
    assert res.n_rows.tolist() == [399, 400]
    assert res.mean_p_first[0] == pytest.approx(0.5, abs=0.01)
    assert res.first_share[0] == pytest.approx(0.5, abs=0.01)
    assert res.mean_p_first[1] > 0.65 and res.first_share[1] > 0.75


def test_paraphrase_sensitivity():
    v = np.random.default_rng(0).normal(size=30)
    same = paraphrase_sensitivity({"t0": v, "t1": np.exp(v), "t2": 3 * v - 1})
    np.testing.assert_allclose(same.spearman, 1.0)
    assert same.mean_spearman == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    noisy = paraphrase_sensitivity({f"t{k}": v + rng.normal(scale=2.0, size=30) for k in range(3)})
    assert noisy.mean_spearman < 0.8
    with pytest.raises(AnalysisInputError):
        paraphrase_sensitivity({"t0": v})


def test_response_quality():
    model = ["a", "a", "a", "a", "b", "b"]
    mass = [0.9, 0.3, np.nan, 0.95, 0.1, 0.2]
    error = [None, None, "timeout", "", None, None]
    res = response_quality(model, mass, error, threshold=0.5)
    assert res.n_rows.tolist() == [4, 2]
    assert res.low_mass_share.tolist() == pytest.approx([1 / 3, 1.0])
    assert res.error_share.tolist() == pytest.approx([0.25, 0.0])


def test_paraphrase_templates_render():
    assert len(PARAPHRASE_TEMPLATES) == 3
    for template in PARAPHRASE_TEMPLATES.values():
        text = template.format(option_a="<first>", option_b="<second>")
        assert text.index("<first>") < text.index("<second>")


def test_plots(tmp_path, check_png):
    model = np.array(["m1"] * 400 + ["m2"] * 400)
    pb = position_bias(model, np.concatenate([oriented_rows(0.0), oriented_rows(0.5)]))
    check_png(plot_position_bias(pb, tmp_path / "pb.png"))
    v = np.random.default_rng(0).normal(size=20)
    ps = paraphrase_sensitivity({"a": v, "b": v + 0.1 * np.arange(20), "c": -v})
    check_png(plot_paraphrase_sensitivity(ps, tmp_path / "ps.png"))
    rq = response_quality(model, np.linspace(0, 1, 800))
    check_png(plot_response_quality(rq, tmp_path / "rq.png"))
