"""Comparison rows → sufficient statistics, in DuckDB. The one place the aggregation SQL lives.

The input is any DuckDB relation with the ``comparisons`` columns of docs/architecture.md, "Where each table comes from" (a catalog
view over Parquet parts, a registered Arrow table, a temporary table). Rows count when
``error IS NULL`` and ``p_a`` is a number; rows comparing an outcome with itself carry no
information and are dropped. Each remaining row is one observation with soft label ``p_a`` =
P(outcome shown first is chosen), so per group the statistics are the row count ``n`` and the
mean label.

- :func:`oriented_stats` groups by ``(outcome_a, outcome_b)`` → :class:`~fit.stats.OrientedStats`.
- :func:`pair_stats` groups by ``(least(a, b), greatest(a, b))`` and flips ``p_a`` of rows whose
  first-listed outcome is the greater id → :class:`~fit.stats.PairStats`.
- The ``*_by_model`` variants add ``model`` to the grouping and return one result per model, for
  batched fits.

Partial pairs. A pair asked in both orders whose rows of one order all failed or were refused
has answers in one order only. Averaging over the order that is left would read the position
bias of that order as a preference, so such a pair never enters an order-averaged label:
:func:`pair_stats` leaves it out, :func:`oriented_stats` keeps its answered order only when asked
to (``partial="keep"``, for fits that model the order with a position term β) and
:func:`partial_pairs` lists them so callers can report how many there were. A pair asked in one
order only (``prompt.both_orders: false``) is not partial: nothing was lost.

Outcome ids are mapped to indices with the caller's list of ids (position = index) inside the
query, before the GROUP BY: the list is a bound parameter joined to the rows, so the grouping
runs on integers and the connection is never modified. All values are bound parameters; only
the relation name is spliced into the SQL, after validation as a (dotted) identifier.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fit.errors import EmptyDataError, FitError, UnknownOutcomeError
from fit.stats import OrientedStats, PairStats

Unknown = Literal["error", "drop"]
Partial = Literal["keep", "drop"]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")

_SCOPE = """
    outcome_a <> outcome_b
    AND ($run_id IS NULL OR run_id = $run_id)
    AND ($models::VARCHAR[] IS NULL OR list_contains($models::VARCHAR[], model))
    AND ($rounds::INTEGER[] IS NULL OR list_contains($rounds::INTEGER[], round))
"""

# Every row in scope with its outcomes' indices (position in the caller's id list, bound as a
# parameter, so the connection is never modified). Grouping on integers instead of id strings,
# and mapping ids in DuckDB's parallel hash join instead of afterwards, halves the aggregation of
# 10M rows. A row naming an id outside the list gets (-1, -1): the caller raises or drops it.
_INDEXED = """
WITH ids AS (
    SELECT unnest($ids::VARCHAR[]) AS id, unnest(range(len($ids::VARCHAR[]))) AS idx
),
indexed AS (
    SELECT {model_col}
           CASE WHEN ia.idx IS NULL OR ib.idx IS NULL THEN -1 ELSE ia.idx END AS a,
           CASE WHEN ia.idx IS NULL OR ib.idx IS NULL THEN -1 ELSE ib.idx END AS b,
           p_a, error
    FROM {rel} c
    LEFT JOIN ids ia ON c.outcome_a::VARCHAR = ia.id
    LEFT JOIN ids ib ON c.outcome_b::VARCHAR = ib.id
    WHERE {scope}
)
"""

# Per presentation order (a shown first): the usable rows' count and mean P. A presentation
# whose rows all failed or were refused keeps a record with n = 0, so a pair asked in both
# orders but answered in one can be told apart from a pair asked in one order.
_PRESENTED = (
    _INDEXED
    + """,
presented AS (
    SELECT {model_col} a AS x, b AS y,
           count(*) FILTER (WHERE {usable})::DOUBLE AS n,
           avg(p_a) FILTER (WHERE {usable}) AS p
    FROM indexed
    GROUP BY ALL
)
"""
)

_USABLE = "error IS NULL AND p_a IS NOT NULL AND NOT isnan(p_a)"

# $keep_partial: keep the answered order of a partial pair (fits with a position term use it
# with its order); otherwise a partial pair is dropped whole.
_ORIENTED_SQL = (
    _PRESENTED
    + """
SELECT {model_col} x, y, n, p FROM presented
QUALIFY n > 0 AND ($keep_partial OR min(n) OVER (
    PARTITION BY {model_col} least(x, y), greatest(x, y)) > 0)
"""
)

# Order-averaged labels on i < j: a pair counts only when every order it was asked in has an
# answer. One GROUP BY on the unordered pair (not one per order, then one per pair), with the
# per-order counts kept as filtered aggregates.
_PAIR_SQL = (
    _INDEXED
    + """
SELECT {model_col} least(a, b) AS x, greatest(a, b) AS y,
       count(*) FILTER (WHERE {usable})::DOUBLE AS n,
       sum(CASE WHEN a <= b THEN p_a ELSE 1.0 - p_a END) FILTER (WHERE {usable}) / n AS p
FROM indexed
GROUP BY ALL
HAVING n > 0
   AND (NOT bool_or(a < b) OR count(*) FILTER (WHERE {usable} AND a < b) > 0)
   AND (NOT bool_or(a > b) OR count(*) FILTER (WHERE {usable} AND a > b) > 0)
"""
)

# Pairs asked in both orders whose answers cover only one of them.
_PARTIAL_SQL = (
    _PRESENTED
    + """
SELECT {model_col} least(x, y) AS x, greatest(x, y) AS y
FROM presented
WHERE x >= 0
GROUP BY ALL
HAVING count(*) > 1 AND max(n) > 0 AND min(n) = 0
"""
)

# The ids in scope that are not in the caller's list (only run to word the error).
_UNKNOWN_SQL = """
WITH named AS (
    SELECT outcome_a::VARCHAR AS o FROM {rel} WHERE {scope}
    UNION SELECT outcome_b::VARCHAR FROM {rel} WHERE {scope}
)
SELECT o FROM named WHERE NOT list_contains($ids::VARCHAR[], o) ORDER BY o
"""


def _relation(name: str) -> str:
    if not _IDENT.match(name):
        raise FitError(
            f"relation name {name!r} is not a plain (optionally dotted) identifier; register the "
            "data as a view or table and pass its name"
        )
    return ".".join(f'"{part}"' for part in name.split("."))


def _ids(outcome_ids: Sequence[str]) -> list[str]:
    """The caller's ids as strings, checked for duplicates (position k is index k)."""
    ids = [str(o) for o in outcome_ids]
    if len(set(ids)) != len(ids):
        dup = sorted(o for o, k in Counter(ids).items() if k > 1)[:5]
        raise FitError(f"outcome_ids has duplicates (e.g. {dup}); each id must appear once")
    return ids


def _query(
    con: duckdb.DuckDBPyConnection,
    template: str,
    relation: str,
    run_id: str | None,
    models: Sequence[str] | None,
    rounds: Sequence[int] | None,
    by_model: bool,
    ids: list[str],
    keep_partial: bool = False,
) -> pa.Table:
    sql = template.format(
        model_col="model," if by_model else "",
        rel=_relation(relation),
        scope=_SCOPE,
        usable=_USABLE,
    )
    params: dict[str, object] = {
        "run_id": run_id,
        "models": None if models is None else [str(m) for m in models],
        "rounds": None if rounds is None else [int(r) for r in rounds],
        "ids": ids,
    }
    if "$keep_partial" in template:
        params["keep_partial"] = bool(keep_partial)
    return con.sql(sql, params=params).to_arrow_table()


def _indices(
    table: pa.Table, unknown: Unknown, missing: Callable[[], list[str]]
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The (x, y) index columns as int64 arrays; rows that named an unknown id (x = −1) raise
    (``unknown="error"``, worded with ``missing()``) or are dropped."""
    x = table["x"].to_numpy().astype(np.int64)
    y = table["y"].to_numpy().astype(np.int64)
    known = x >= 0
    if not known.all():
        if unknown == "error":
            names = missing()
            raise UnknownOutcomeError(
                f"{len(names)} outcome id(s) in the data are not in outcome_ids, e.g. "
                f"{names[:5]}; pass the run's full outcome list, or unknown='drop' to ignore "
                "those rows"
            )
        table, x, y = table.filter(pa.array(known)), x[known], y[known]
    return table, x, y


def _missing(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    run_id: str | None,
    models: Sequence[str] | None,
    rounds: Sequence[int] | None,
    ids: list[str],
) -> Callable[[], list[str]]:
    def names() -> list[str]:
        table = _query(con, _UNKNOWN_SQL, relation, run_id, models, rounds, False, ids)
        return [str(v) for v in table.column(0).to_pylist()]

    return names


def _split(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    """(model, row indices) per model, in sorted model order."""
    enc = pc.dictionary_encode(table["model"]).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    names = enc.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    out = [(names[c], order[bounds[c] : bounds[c + 1]]) for c in range(len(names))]
    return sorted(out, key=lambda t: t[0])


def _build(kind: str, x: np.ndarray, y: np.ndarray, n: np.ndarray, p: np.ndarray, size: int):
    if kind == "oriented":
        return OrientedStats(x, y, n, np.clip(p, 0.0, 1.0), size)
    # the pair query puts the lower index first (least/greatest) and p is P(x ≻ y)
    return PairStats(x, y, n, np.clip(p, 0.0, 1.0), size)


def _stats(
    kind: str,
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    run_id: str | None,
    models: Sequence[str] | None,
    rounds: Sequence[int] | None,
    relation: str,
    unknown: Unknown,
    by_model: bool,
    partial: Partial = "keep",
) -> dict[str, OrientedStats | PairStats]:
    template = _ORIENTED_SQL if kind == "oriented" else _PAIR_SQL
    ids = _ids(outcome_ids)
    table = _query(
        con,
        template,
        relation,
        run_id,
        models,
        rounds,
        by_model,
        ids,
        keep_partial=partial == "keep",
    )
    what = f"run_id={run_id!r}, models={models!r}, rounds={rounds!r} in {relation!r}"
    if table.num_rows == 0:
        raise EmptyDataError(f"no usable comparison rows for {what} (errors and nulls excluded)")
    missing = _missing(con, relation, run_id, models, rounds, ids)
    table, x, y = _indices(table, unknown, missing)
    if table.num_rows == 0:
        raise EmptyDataError(f"no rows for {what} involve the given outcome ids")
    n = table["n"].to_numpy().astype(np.float64)
    p = table["p"].to_numpy().astype(np.float64)
    size = len(outcome_ids)
    if not by_model:
        return {"": _build(kind, x, y, n, p, size)}
    return {m: _build(kind, x[r], y[r], n[r], p[r], size) for m, r in _split(table)}


def oriented_stats(
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    *,
    run_id: str | None,
    model: str,
    rounds: Sequence[int] | None = None,
    relation: str = "comparisons",
    unknown: Unknown = "error",
    partial: Partial = "keep",
) -> OrientedStats:
    """Ordered-pair statistics of one model: GROUP BY (outcome_a, outcome_b).

    Args:
        con: DuckDB connection that can see ``relation``.
        outcome_ids: outcome ids; position k is index k in the result (N = len).
        run_id: run to read; None reads every run in the relation.
        model: model name.
        rounds: active-learning rounds to include; None for all.
        relation: table or view with the ``comparisons`` columns.
        unknown: ``"error"`` (default) raises on ids missing from ``outcome_ids``;
            ``"drop"`` ignores those rows (to fit a subset of outcomes).
        partial: ``"keep"`` (default) keeps the answered order of a partial pair (module
            docstring), right for fits with a position term; ``"drop"`` leaves partial pairs out,
            as anything that folds the result (:func:`fit.stats.fold`) must.

    Returns:
        One record per ordered (first, second) with n = row count, p_first = mean p_a.

    Raises:
        EmptyDataError: no usable rows match.
        UnknownOutcomeError: the data names ids not in ``outcome_ids`` (with unknown="error").
    """
    out = _stats(
        "oriented", con, outcome_ids, run_id, [model], rounds, relation, unknown, False, partial
    )
    return out[""]  # type: ignore[return-value]


def pair_stats(
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    *,
    run_id: str | None,
    model: str,
    rounds: Sequence[int] | None = None,
    relation: str = "comparisons",
    unknown: Unknown = "error",
) -> PairStats:
    """Unordered-pair statistics of one model: both orders folded onto ``i < j``.

    Arguments and errors as :func:`oriented_stats`. Returns one record per unordered pair with
    n = rows in either order and p = mean P(i ≻ j) (``p_a`` for rows showing i first,
    ``1 − p_a`` for rows showing j first). Partial pairs are left out (module docstring).
    """
    out = _stats("pair", con, outcome_ids, run_id, [model], rounds, relation, unknown, False)
    return out[""]  # type: ignore[return-value]


def oriented_stats_by_model(
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    *,
    run_id: str | None,
    models: Sequence[str] | None = None,
    rounds: Sequence[int] | None = None,
    relation: str = "comparisons",
    unknown: Unknown = "error",
    partial: Partial = "keep",
) -> dict[str, OrientedStats]:
    """:func:`oriented_stats` for many models in one query (GROUP BY model too).

    Args:
        models: models to include; None for every model in the run.
        (others as :func:`oriented_stats`)

    Returns:
        Model name → statistics, in sorted model order; models without usable rows are absent.
    """
    out = _stats(
        "oriented", con, outcome_ids, run_id, models, rounds, relation, unknown, True, partial
    )
    return out  # type: ignore[return-value]


def pair_stats_by_model(
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    *,
    run_id: str | None,
    models: Sequence[str] | None = None,
    rounds: Sequence[int] | None = None,
    relation: str = "comparisons",
    unknown: Unknown = "error",
) -> dict[str, PairStats]:
    """:func:`pair_stats` for many models in one query; feeds :func:`fit_thurstonian_batch`.

    Arguments as :func:`oriented_stats_by_model`. Returns model name → unordered-pair statistics.
    """
    out = _stats("pair", con, outcome_ids, run_id, models, rounds, relation, unknown, True)
    return out  # type: ignore[return-value]


def partial_pairs(
    con: duckdb.DuckDBPyConnection,
    outcome_ids: Sequence[str],
    *,
    run_id: str | None,
    model: str,
    rounds: Sequence[int] | None = None,
    relation: str = "comparisons",
) -> np.ndarray:
    """Pairs of one model asked in both orders with usable answers in only one of them.

    Arguments as :func:`oriented_stats` (ids missing from ``outcome_ids`` are ignored).

    Returns:
        Index pairs ``(i, j)`` with ``i < j``, shape (m, 2), int64; (0, 2) when there are none.
    """
    table = _query(con, _PARTIAL_SQL, relation, run_id, [model], rounds, False, _ids(outcome_ids))
    if table.num_rows == 0:
        return np.zeros((0, 2), dtype=np.int64)
    _, x, y = _indices(table, "drop", list)
    return np.stack([np.minimum(x, y), np.maximum(x, y)], axis=1)
