"""Reading an analysis's inputs back from the store (SQL over the catalog) and writing its
result tables and figures (``<root>/analyses/…``, ``<root>/figures/…``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.analyze_common import AnalysisError, Context, Output
from elicit.outcomes import Outcome, OutcomeSet
from storage import Root, RunLayout
from storage.catalog import connect

# --- reading results back ----------------------------------------------------------------------


def _con(root: Root) -> Any:
    return connect(root)


def run_models(root: Root, run_id: str) -> list[str]:
    """Models that have comparisons in a run, sorted."""
    con = _con(root)
    try:
        rows = con.execute(
            "SELECT DISTINCT model FROM comparisons WHERE run_id = $r ORDER BY model",
            {"r": run_id},
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def stored_outcomes(root: Root, run_id: str) -> OutcomeSet:
    """The outcome set of a stored run, from its ``outcomes`` table."""
    con = _con(root)
    try:
        rows = con.execute(
            "SELECT outcome_id, text, attributes FROM outcomes WHERE run_id = $r",
            {"r": run_id},
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise AnalysisError(f"run {run_id!r} has no outcomes table")
    return OutcomeSet(
        run_id,
        tuple(Outcome(oid, text, json.loads(attrs) if attrs else {}) for oid, text, attrs in rows),
    )


def utilities(root: Root, run_id: str, model: str) -> dict[str, float]:
    """Outcome id → μ of the latest fit of one model of a run (outcomes without μ left out)."""
    con = _con(root)
    try:
        fit = con.execute(
            "SELECT fit_id FROM fits WHERE run_id = $r AND model = $m "
            "ORDER BY created_at DESC LIMIT 1",
            {"r": run_id, "m": model},
        ).fetchone()
        if fit is None:
            raise AnalysisError(
                f"run {run_id!r}, model {model!r} has no fit; `valuescope fit {run_id}` fits it"
            )
        rows = con.execute(
            "SELECT outcome_id, mu FROM utilities WHERE run_id = $r AND model = $m "
            "AND fit_id = $f AND mu IS NOT NULL",
            {"r": run_id, "m": model, "f": fit[0]},
        ).fetchall()
    finally:
        con.close()
    return {oid: float(mu) for oid, mu in rows}


def fit_row(root: Root, run_id: str, model: str) -> dict[str, Any]:
    """The latest ``fits`` row of one model of a run (empty when there is none)."""
    con = _con(root)
    try:
        rows = (
            con.sql(
                "SELECT * FROM fits WHERE run_id = $r AND model = $m "
                "ORDER BY created_at DESC LIMIT 1",
                params={"r": run_id, "m": model},
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    return rows[0] if rows else {}


@dataclass(frozen=True)
class PairProbs:
    """Folded pairwise probabilities of one model of a run."""

    first: list[str]
    """Outcome shown first in orientation 0 (the lower index of the pair)."""
    second: list[str]
    """The other outcome."""
    p: np.ndarray
    """P(first ≻ second), both orientations averaged (position bias cancels), shape (m,)."""
    n: np.ndarray
    """Usable rows behind each probability, shape (m,)."""

    def lookup(self) -> dict[tuple[str, str], float]:
        """(a, b) → P(a ≻ b), both directions."""
        out: dict[tuple[str, str], float] = {}
        for a, b, p in zip(self.first, self.second, self.p.tolist(), strict=True):
            out[(a, b)] = p
            out[(b, a)] = 1.0 - p
        return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    """An Arrow column as numpy: floats with NaN for null, everything else as objects."""
    col = table.column(name)
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(col.to_pylist(), dtype=object)


def pair_probs(root: Root, run_id: str, model: str) -> PairProbs:
    """P(i ≻ j) per asked pair (every round, held-out included), failed rows skipped."""
    con = _con(root)
    try:
        t = con.sql(
            """SELECT any_value(CASE WHEN orientation = 0 THEN outcome_a ELSE outcome_b END) AS i,
                      any_value(CASE WHEN orientation = 0 THEN outcome_b ELSE outcome_a END) AS j,
                      avg(CASE WHEN orientation = 0 THEN p_a ELSE 1 - p_a END) AS p,
                      count(*) AS n
               FROM comparisons
               WHERE run_id = $r AND model = $m AND error IS NULL AND p_a IS NOT NULL
                     AND NOT isnan(p_a)
               GROUP BY pair_id ORDER BY pair_id""",
            params={"r": run_id, "m": model},
        ).to_arrow_table()
    finally:
        con.close()
    return PairProbs(
        [str(x) for x in t.column("i").to_pylist()],
        [str(x) for x in t.column("j").to_pylist()],
        _column(t, "p"),
        _column(t, "n").astype(np.int64),
    )


def oriented_rows(root: Root, run_id: str, model: str | None = None) -> dict[str, np.ndarray]:
    """Per-row ``model``, ``p_a`` (P(first)), ``mass`` and ``error`` of a run (position bias
    and answer quality); null floats are NaN."""
    con = _con(root)
    try:
        t = con.sql(
            "SELECT model, p_a, mass, error FROM comparisons WHERE run_id = $r "
            "AND ($m IS NULL OR model = $m)",
            params={"r": run_id, "m": model},
        ).to_arrow_table()
    finally:
        con.close()
    return {name: _column(t, name) for name in t.column_names}


def attributes_of(outcomes: OutcomeSet) -> dict[str, dict[str, Any]]:
    return {o.id: dict(o.attributes) for o in outcomes}


# --- writing results ---------------------------------------------------------------------------


_TEXT_COLUMNS = frozenset(
    {"note", "excluded", "pivot", "nearest_reference", "chosen", "answer", "method", "source"}
)
"""Columns that hold text even when every value of a file is null (others default to float)."""


def _arrow_type(name: str, values: list[Any]) -> pa.DataType:
    sample = next((v for v in values if v is not None), None)
    if sample is None and name in _TEXT_COLUMNS:
        return pa.string()
    if isinstance(sample, bool):
        return pa.bool_()
    if isinstance(sample, (int, np.integer)):
        return pa.int64()
    if isinstance(sample, (float, np.floating)) or sample is None:
        return pa.float64()
    if isinstance(sample, dt.datetime):
        return pa.timestamp("ms", tz="UTC")
    return pa.string()


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return value


def write_rows(
    ctx: Context, run_id: str, model: str, table: str, rows: Sequence[dict[str, Any]]
) -> str:
    """Write rows as ``<root>/analyses/<analysis>/run_id=…/model=…/<table>.parquet``.

    Every row gets ``analysis``, ``run_id``, ``base_run_id`` and ``model`` first and
    ``created_at`` last; NaN becomes null; lists and mappings become JSON text.
    """
    head = {
        "analysis": ctx.key,
        "run_id": run_id,
        "base_run_id": ctx.base.run_id,
        "model": model,
    }
    now = dt.datetime.now(dt.UTC)
    full = [{**head, **{k: _clean(v) for k, v in r.items()}, "created_at": now} for r in rows]
    names: list[str] = []
    for r in full:
        names.extend(k for k in r if k not in names)
    columns = {n: [r.get(n) for r in full] for n in names}
    schema = pa.schema([(n, _arrow_type(n, columns[n])) for n in names]).with_metadata(
        {"valuescope.table": f"analysis_{ctx.key}_{table}", "valuescope.schema_version": "1"}
    )
    data = pa.table(columns, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, compression="zstd")
    path = RunLayout(ctx.root, run_id).analysis(ctx.key, model, table)
    ctx.root.write_atomic(path, sink.getvalue())
    return path


def write_figure(
    ctx: Context, run_id: str, model: str, plot: Callable[[Any, str], Any], result: Any
) -> str:
    """Render ``plot(result, path)`` and store it as ``<root>/figures/…/<analysis>.png``."""
    target = RunLayout(ctx.root, run_id).figure(model, ctx.name)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "figure.png")
        plot(result, local)
        data = Path(local).read_bytes()
    ctx.root.write_atomic(target, data)
    return ctx.root.display(target)


def combine_pngs(paths: Sequence[str], out: str, titles: Sequence[str] | None = None) -> str:
    """Lay several PNG files side by side in one figure (for multi-panel analyses)."""
    import matplotlib.image as mpimg

    from fit.analyses._common import new_figure, save_figure

    images = [mpimg.imread(p) for p in paths]
    fig = new_figure(3.6 * len(images), 3.1)
    for k, img in enumerate(images):
        ax = fig.add_subplot(1, len(images), k + 1)
        ax.imshow(img)
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[k], fontsize=9)
    save_figure(fig, out)
    return out


def finish(
    ctx: Context,
    run_id: str,
    model: str,
    row: dict[str, Any],
    plot: Callable[[Any, str], Any] | None,
    result: Any,
    *,
    figure_model: str | None = None,
    details: dict[str, Sequence[dict[str, Any]]] | None = None,
) -> Output:
    """Write the result row, detail tables and figure of one model; returns the output."""
    figure = None
    if plot is not None and result is not None:
        figure = write_figure(ctx, run_id, figure_model or model, plot, result)
    write_rows(ctx, run_id, model, "result", [row])
    for table, rows in (details or {}).items():
        if rows:
            write_rows(ctx, run_id, model, table, rows)
    return Output(ctx.name, run_id, model, row, figure)
