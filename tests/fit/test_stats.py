"""PairStats / OrientedStats validation and folding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fit import InvalidStatsError, OrientedStats, PairStats, fold
from fit.errors import FitError


def test_pairstats_coerces_and_reports():
    s = PairStats([0, 1], [2, 2], [1, 3], [0.25, 1.0], 3)
    assert s.i.dtype == np.int64 and s.n.dtype == np.float64
    assert s.n_pairs == 2
    assert s.outcome_weight().tolist() == [1.0, 3.0, 4.0]
    assert s.observed().all()
    assert s.keys().tolist() == [2, 5]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0], [1, 2], [1, 1], [0.5, 0.5], 3), "i has 1 entries but n has 2"),
        (([1], [0], [1], [0.5], 3), "i < j"),
        (([0], [0], [1], [0.5], 3), "i < j"),
        (([0], [3], [1], [0.5], 3), r"j\[0\] = 3 is outside \[0, 3\)"),
        (([-1], [1], [1], [0.5], 3), "outside"),
        (([0], [1], [-1], [0.5], 3), "counts must be finite and >= 0"),
        (([0], [1], [1], [1.5], 3), r"p\[0\] = 1.5"),
        (([0], [1], [1], [np.nan], 3), "soft labels"),
        (([[0]], [[1]], [[1]], [[0.5]], 3), "1-D"),
        (([], [], [], [], 0), "n_outcomes must be >= 1"),
    ],
)
def test_pairstats_validation(args, match):
    with pytest.raises(InvalidStatsError, match=match):
        PairStats(*args)


def test_validation_errors_are_fit_errors_and_value_errors():
    with pytest.raises(FitError):
        OrientedStats([0], [0], [1], [0.5], 2)
    with pytest.raises(ValueError, match="itself"):
        OrientedStats([1], [1], [1], [0.5], 2)


def test_fold_both_orientations_by_hand():
    # (0 first vs 1): P(0) = 0.8 from 2 rows; (1 first vs 0): P(1) = 0.4 from 3 rows ⇒ P(0) = 0.6.
    o = OrientedStats([0, 1, 2], [1, 0, 1], [2.0, 3.0, 1.0], [0.8, 0.4, 0.9], 3)
    p = fold(o)
    assert p.i.tolist() == [0, 1] and p.j.tolist() == [1, 2]
    assert p.n.tolist() == [5.0, 1.0]
    np.testing.assert_allclose(p.p, [(2 * 0.8 + 3 * 0.6) / 5, 0.1])


def test_from_rows_aggregates_and_fold_matches_rowwise_mean():
    first = np.array([0, 0, 1, 2, 2, 0])
    second = np.array([1, 1, 0, 0, 0, 1])
    p = np.array([1.0, 0.5, 0.0, 0.3, 0.1, 0.0])
    o = OrientedStats.from_rows(first, second, p, 3)
    assert list(zip(o.first.tolist(), o.second.tolist(), strict=True)) == [(0, 1), (1, 0), (2, 0)]
    np.testing.assert_allclose(o.n, [3, 1, 2])
    np.testing.assert_allclose(o.p_first, [0.5, 0.0, 0.2])
    f = fold(o)
    np.testing.assert_allclose(f.p, [(1 + 0.5 + 1 + 0) / 4, 1 - 0.2])  # (0,1): rows, (0,2)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(1, n - 1), st.floats(0, 1)),
                min_size=1,
                max_size=40,
            ),
        )
    )
)
def test_fold_equals_row_level_mean(case):
    n, rows = case
    first = np.array([r[0] for r in rows])
    second = (first + np.array([r[1] for r in rows])) % n
    p = np.array([r[2] for r in rows])
    folded = fold(OrientedStats.from_rows(first, second, p, n))
    # Row level: P(lo ≻ hi) per row, then the plain mean per unordered pair.
    lo, hi = np.minimum(first, second), np.maximum(first, second)
    p_lo = np.where(first == lo, p, 1 - p)
    for k in range(folded.n_pairs):
        rows_k = (lo == folded.i[k]) & (hi == folded.j[k])
        assert folded.n[k] == rows_k.sum()
        assert folded.p[k] == pytest.approx(p_lo[rows_k].mean(), abs=1e-12)
    assert folded.n.sum() == len(rows)
