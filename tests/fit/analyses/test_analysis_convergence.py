from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.convergence import convergence, plot_convergence, plot_scaling, scaling


def test_identical_vectors_have_similarity_one():
    v = np.random.default_rng(0).normal(size=50)
    res = convergence({"a": v, "b": v.copy(), "c": v.copy()})
    np.testing.assert_allclose(res.cosine, 1.0)
    np.testing.assert_allclose(res.pearson, 1.0)
    assert res.mean_pearson == pytest.approx(1.0) and res.n_outcomes == 50


def test_affine_and_negated_vectors():
    v = np.random.default_rng(1).normal(size=40)
    res = convergence({"a": v, "b": 2 * v + 5, "c": -v})
    i = {m: k for k, m in enumerate(res.models)}
    assert res.pearson[i["a"], i["b"]] == pytest.approx(1.0)
    assert res.pearson[i["a"], i["c"]] == pytest.approx(-1.0)
    assert res.cosine[i["a"], i["b"]] < 1.0  # the shift matters to the uncentred cosine


def test_mappings_use_common_outcomes():
    res = convergence({"a": {"x": 1.0, "y": 2.0, "z": 3.0}, "b": {"x": 1.0, "y": 2.0, "w": 0.0}})
    assert res.n_outcomes == 2
    with pytest.raises(AnalysisInputError):
        convergence({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]})


def test_scaling_from_columns_and_csv(tmp_path):
    table = {
        "model": ["s", "m", "l", "xl"],
        "mmlu": [40.0, 55.0, 70.0, 85.0],
        "decisiveness": [0.2, 0.4, 0.6, 0.8],
        "cycle_prob": [0.2, 0.1, 0.05, 0.01],
        "partial": [1.0, "", 3.0, 4.0],
    }
    res = scaling(table, "mmlu")
    rows = {r.metric: r for r in res.rows}
    assert "model" not in rows
    assert rows["decisiveness"].pearson == pytest.approx(1.0)
    assert rows["cycle_prob"].spearman == pytest.approx(-1.0)
    assert rows["partial"].n == 3
    path = tmp_path / "metrics.csv"
    lines = [",".join(table)] + [",".join(str(table[c][k]) for c in table) for k in range(4)]
    path.write_text("\n".join(lines) + "\n")
    from_csv = scaling(path, "mmlu")
    assert [r.metric for r in from_csv.rows] == [r.metric for r in res.rows]
    assert from_csv.rows[0].pearson == pytest.approx(res.rows[0].pearson)
    with pytest.raises(AnalysisInputError, match="no column"):
        scaling(table, "params")


def test_plots(tmp_path, check_png):
    rng = np.random.default_rng(2)
    res = convergence({f"m{k}": rng.normal(size=30) for k in range(4)})
    check_png(plot_convergence(res, tmp_path / "conv.png"))
    sc = scaling({"cap": [1.0, 2.0, 3.0, 4.0], "a": [1, 2, 3, 5], "b": [4, 3, 2, 2]}, "cap")
    check_png(plot_scaling(sc, tmp_path / "scaling.png"))
