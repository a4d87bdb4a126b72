from __future__ import annotations

import numpy as np
import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.political import plot_political, political_pca


def planted(seed: int = 0, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(12, 2)) * np.array([3.0, 1.5])
    basis, _ = np.linalg.qr(rng.normal(size=(30, 2)))
    x = z @ basis.T + rng.normal(scale=noise, size=(12, 30)) + rng.normal(size=30)
    return z, x


def test_pca_recovers_a_planted_plane():
    z, x = planted()
    utilities = {f"agent{k}": row for k, row in enumerate(x)}
    res = political_pca(utilities, references=["agent0", "agent1"])
    assert res.coords.shape == (12, 2) and res.components.shape == (2, 30)
    assert res.explained_variance_ratio.sum() > 0.99
    assert res.explained_variance_ratio[0] > res.explained_variance_ratio[1]
    # Coordinates equal the planted ones up to a rotation: a linear map explains them fully.
    zc = z - z.mean(axis=0)
    fitted, *_ = np.linalg.lstsq(zc, res.coords, rcond=None)
    resid = res.coords - zc @ fitted
    assert np.sum(resid**2) / np.sum(res.coords**2) < 1e-4
    assert res.is_reference.tolist() == [True, True] + [False] * 10


def test_mappings_use_common_outcomes_and_signs_are_stable():
    _, x = planted(seed=1)
    maps = {f"a{k}": {f"p{j}": float(v) for j, v in enumerate(row)} for k, row in enumerate(x)}
    maps["a0"]["extra"] = 1.0
    res = political_pca(maps)
    assert len(res.outcome_ids) == 30 and "extra" not in res.outcome_ids
    again = political_pca(maps)
    np.testing.assert_array_equal(res.coords, again.coords)
    for comp in res.components:
        assert comp[np.argmax(np.abs(comp))] > 0


def test_bad_inputs():
    with pytest.raises(AnalysisInputError):
        political_pca({"only": [1.0, 2.0, 3.0]})
    with pytest.raises(AnalysisInputError, match="unknown reference"):
        political_pca({"a": [1.0, 2.0], "b": [2.0, 1.0]}, references=["c"])


def test_plot(tmp_path, check_png):
    _, x = planted()
    res = political_pca({f"agent{k}": row for k, row in enumerate(x)}, references=["agent3"])
    check_png(plot_political(res, tmp_path / "pca.png"))
