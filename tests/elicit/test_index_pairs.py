"""``elicit.design.index_pairs``: the one orientation rule for tables of pairs (pairs files and
control targets). A row naming the higher index first must come back as (lo, hi) and flagged, so
a per-row probability meant a-over-b is flipped to lo-over-hi; duplicates keep the first row."""

import numpy as np
import pytest

from elicit.design import index_pairs
from elicit.errors import ElicitError


def test_rows_are_oriented_low_to_high_and_flagged_when_swapped():
    index = {"x": 0, "y": 1, "z": 2}
    lo, hi, keep, swapped = index_pairs(["y", "x", "x", "z"], ["x", "z", "y", "y"], index, "t")
    # rows: (y,x) → (0,1) swapped; (x,z) → (0,2); (x,y) duplicate of row 0, dropped; (z,y) swapped
    assert lo.tolist() == [0, 0, 1] and hi.tolist() == [1, 2, 2]
    assert keep.tolist() == [0, 1, 3]
    assert swapped.tolist() == [True, False, True]


def test_control_targets_flip_probabilities_of_swapped_rows():
    from cluster.control.steer import _orient

    index = {"x": 0, "y": 1}
    target = _orient(["y"], ["x"], np.array([0.9]), index, "t")
    assert target.p.tolist() == pytest.approx([0.1])  # P(y ≻ x) = 0.9 → P(x ≻ y) = 0.1


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [(["x"], ["q"], "unknown outcome id"), (["x"], ["x"], "row 2: outcome 'x' paired with itself")],
)
def test_bad_rows_name_the_table_and_row(a, b, message):
    with pytest.raises(ElicitError, match=message):
        index_pairs(a, b, {"x": 0, "y": 1}, "pairs file 'p.csv'")
