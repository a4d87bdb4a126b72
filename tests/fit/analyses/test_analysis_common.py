from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fit.analyses._common import correlation_matrix, pearson, rankdata, spearman


def test_rankdata_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(4, 30)).astype(float)
    np.testing.assert_allclose(rankdata(x[0]), stats.rankdata(x[0]))
    np.testing.assert_allclose(rankdata(x), stats.rankdata(x, axis=1))


def test_correlations_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = a[:10]
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0])
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0])
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    m = correlation_matrix(np.vstack([a, b]))
    assert m[0, 1] == pytest.approx(pearson(a, b))
