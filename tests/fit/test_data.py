"""DuckDB aggregation on a real in-memory DuckDB table with the comparisons schema."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from fit import EmptyDataError, FitError, UnknownOutcomeError, fit_thurstonian_batch, fold
from fit.data import (
    oriented_stats,
    oriented_stats_by_model,
    pair_stats,
    pair_stats_by_model,
    partial_pairs,
)
from storage.schemas import to_table

IDS = ["o0", "o1", "o2", "o3"]
# (model, round, outcome_a, outcome_b, p_a, error)
ROWS = [
    ("m1", 0, "o0", "o1", 0.9, None),
    ("m1", 0, "o0", "o1", 0.7, None),
    ("m1", 0, "o1", "o0", 0.4, None),  # flipped: P(o0) = 0.6
    ("m1", 1, "o2", "o0", 0.2, None),  # only the flipped order: P(o0 ≻ o2) = 0.8
    ("m1", 1, "o1", "o2", 0.5, None),
    ("m1", 1, "o3", "o2", 0.75, None),
    ("m1", 1, "o1", "o2", None, "timeout"),  # failed call: excluded
    ("m1", 1, "o1", "o2", 0.99, "parse error"),  # error with a value: still excluded
    ("m1", 1, "o2", "o1", float("nan"), None),  # NaN becomes null in to_table: excluded
    ("m1", 1, "o3", "o3", 0.5, None),  # self-comparison: excluded
    ("m2", 0, "o1", "o0", 0.1, None),
    ("m2", 0, "o3", "o2", 0.6, None),
    ("m2", 0, "o2", "o3", 0.3, None),
]


@pytest.fixture
def con():
    cols = list(zip(*ROWS, strict=True))
    n = len(ROWS)
    table = to_table(
        "comparisons",
        {
            "run_id": "r1",
            "model": list(cols[0]),
            "round": list(cols[1]),
            "shard": 0,
            "pair_id": np.arange(n),
            "outcome_a": list(cols[2]),
            "outcome_b": list(cols[3]),
            "orientation": 0,
            "template_id": "t",
            "mode": "logprob",
            "p_a": np.array([np.nan if v is None else v for v in cols[4]]),
            "p_b": np.array([np.nan if v is None else 1 - v for v in cols[4]]),
            "error": list(cols[5]),
        },
    )
    other_run = to_table(
        "comparisons",
        {
            "run_id": "r2",
            "model": "m1",
            "round": 0,
            "shard": 0,
            "pair_id": [0],
            "outcome_a": ["o0"],
            "outcome_b": ["o1"],
            "orientation": 0,
            "template_id": "t",
            "mode": "logprob",
            "p_a": [0.0],
        },
    )
    c = duckdb.connect()
    c.register("arrow_rows", table)
    c.register("arrow_other", other_run)
    c.execute(
        "CREATE TABLE comparisons AS SELECT * FROM arrow_rows UNION ALL SELECT * FROM arrow_other"
    )
    yield c
    c.close()


def _as_dict(stats, p_name="p"):
    a = stats.i if hasattr(stats, "i") else stats.first
    b = stats.j if hasattr(stats, "j") else stats.second
    p = getattr(stats, p_name)
    return {
        (int(x), int(y)): (float(n), round(float(q), 12))
        for x, y, n, q in zip(a, b, stats.n, p, strict=True)
    }


def test_pair_stats_folds_both_orientations(con):
    s = pair_stats(con, IDS, run_id="r1", model="m1")
    assert s.n_outcomes == 4
    assert _as_dict(s) == {
        (0, 1): (3.0, round((0.9 + 0.7 + 0.6) / 3, 12)),
        (0, 2): (1.0, 0.8),
        # (1, 2) is partial: asked in both orders, the o2-first row refused (NaN) → left out
        (2, 3): (1.0, 0.25),  # o3 first with 0.75 ⇒ P(o2 ≻ o3) = 0.25
    }


def test_oriented_stats_keep_order_and_agree_with_fold(con):
    o = oriented_stats(con, IDS, run_id="r1", model="m1")
    assert _as_dict(o, "p_first") == {
        (0, 1): (2.0, 0.8),
        (1, 0): (1.0, 0.4),
        (2, 0): (1.0, 0.2),
        (1, 2): (1.0, 0.5),
        (3, 2): (1.0, 0.75),
    }
    dropped = oriented_stats(con, IDS, run_id="r1", model="m1", partial="drop")
    assert (1, 2) not in _as_dict(dropped, "p_first")  # the partial pair's answered order
    assert _as_dict(fold(dropped)) == _as_dict(pair_stats(con, IDS, run_id="r1", model="m1"))


def test_partial_pairs_are_listed_and_never_averaged_over_one_order(con):
    """A pair asked in both orders with answers in one (errors, refusals) is partial: listed,
    kept in its order for position-bias fits, never folded into an order-averaged label. A pair
    asked in one order only (o0/o2, o2/o3) is not partial."""
    assert partial_pairs(con, IDS, run_id="r1", model="m1").tolist() == [[1, 2]]
    assert partial_pairs(con, IDS, run_id="r1", model="m2").shape == (0, 2)
    assert partial_pairs(con, IDS, run_id="r1", model="m1", rounds=[0]).shape == (0, 2)
    kept = oriented_stats(con, IDS, run_id="r1", model="m1")
    assert _as_dict(kept, "p_first")[(1, 2)] == (1.0, 0.5)
    by = oriented_stats_by_model(con, IDS, run_id="r1", partial="drop")
    assert _as_dict(by["m1"], "p_first") == _as_dict(
        oriented_stats(con, IDS, run_id="r1", model="m1", partial="drop"), "p_first"
    )
    # the error rows of the pair are o1-first: were they answered instead, the pair is whole
    con.execute("UPDATE comparisons SET p_a = 0.4 WHERE outcome_a = 'o2' AND outcome_b = 'o1'")
    assert partial_pairs(con, IDS, run_id="r1", model="m1").shape == (0, 2)
    assert _as_dict(pair_stats(con, IDS, run_id="r1", model="m1"))[(1, 2)] == (2.0, 0.55)


def test_index_order_follows_the_id_list_not_string_order(con):
    ids = ["o3", "o2", "o1", "o0"]  # reversed: o3 is index 0
    s = pair_stats(con, ids, run_id="r1", model="m1")
    d = _as_dict(s)
    assert d[(2, 3)] == (3.0, round(1 - (0.9 + 0.7 + 0.6) / 3, 12))  # P(o1 ≻ o0)
    assert d[(0, 1)] == (1.0, 0.75)  # P(o3 ≻ o2)


def test_rounds_and_run_filters(con):
    s = pair_stats(con, IDS, run_id="r1", model="m1", rounds=[0])
    assert list(_as_dict(s)) == [(0, 1)]
    all_runs = pair_stats(con, IDS, run_id=None, model="m1", rounds=[0])
    assert _as_dict(all_runs)[(0, 1)] == (4.0, round((0.9 + 0.7 + 0.6 + 0.0) / 4, 12))
    with pytest.raises(EmptyDataError, match="no usable comparison rows"):
        pair_stats(con, IDS, run_id="r1", model="m1", rounds=[7])
    with pytest.raises(EmptyDataError):
        pair_stats(con, IDS, run_id="nope", model="m1")


def test_by_model(con):
    by = pair_stats_by_model(con, IDS, run_id="r1")
    assert list(by) == ["m1", "m2"]
    assert _as_dict(by["m1"]) == _as_dict(pair_stats(con, IDS, run_id="r1", model="m1"))
    assert _as_dict(by["m2"]) == {(0, 1): (1.0, 0.9), (2, 3): (2.0, round((0.4 + 0.3) / 2, 12))}
    only = oriented_stats_by_model(con, IDS, run_id="r1", models=["m2"])
    assert list(only) == ["m2"] and only["m2"].n_pairs == 3
    fits = fit_thurstonian_batch(list(by.values()), allow_unobserved=True, check_connected=False)
    assert len(fits) == 2


def test_unknown_ids(con):
    with pytest.raises(UnknownOutcomeError, match=r"1 outcome id\(s\).*'o3'"):
        pair_stats(con, ["o0", "o1", "o2"], run_id="r1", model="m1")
    s = pair_stats(con, ["o0", "o1", "o2"], run_id="r1", model="m1", unknown="drop")
    assert (2, 3) not in _as_dict(s) and s.n_outcomes == 3
    with pytest.raises(FitError, match="duplicates"):
        pair_stats(con, ["o0", "o0", "o1", "o2", "o3"], run_id="r1", model="m1")


def test_relation_name_is_validated(con):
    with pytest.raises(FitError, match="identifier"):
        pair_stats(con, IDS, run_id="r1", model="m1", relation="comparisons; DROP TABLE x")
    con.execute("CREATE VIEW v AS SELECT * FROM comparisons WHERE model = 'm2'")
    assert pair_stats(con, IDS, run_id="r1", model="m2", relation="v").n_pairs == 2


def test_values_are_bound_not_spliced(con):
    # A model name that would break string-formatted SQL simply matches nothing.
    with pytest.raises(EmptyDataError):
        pair_stats(con, IDS, run_id="r1", model="m1' OR '1'='1")
