"""The run store: the one place that opens a results root's catalog and speaks SQL to it.

Every command used to open the catalog itself (listing every part file and parsing every
manifest each time) and to write its own SQL; the copies drifted. A :class:`RunStore` holds one
read-only DuckDB connection per results root for the life of a command and hands out typed
readers. The aggregation of comparison rows into sufficient statistics stays in
:mod:`fit.data` (its fold SQL is the single definition of which rows count); the store only
passes its connection there.

The connection is reused until something new lands: writers that go through the store
(:meth:`RunStore.write_analysis_table`, :meth:`RunStore.write_table`) and the run loop (after
each round, :meth:`RunStore.refresh`) mark it stale, and the next read reopens it. Local views are
globs, so new parts of an existing table show up without a reopen; what needs the reopen is the
``runs`` table (manifests), tables that had no file when the connection was opened, new analysis
views, and every view of an ``s3://`` root (whose file list is fixed when opened).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.errors import ClusterError
from storage import Root, RunLayout
from storage.catalog import analysis_views, connect, diagnose, run_query
from storage.schemas import to_table
from storage.writer import write_table

if TYPE_CHECKING:
    import duckdb

    from elicit.outcomes import OutcomeSet
    from fit.stats import OrientedStats

#: Round 0 of every run holds the held-out pairs: asked before any training round, used only
#: for held-out metrics, never for training or acquisition.
HOLDOUT_ROUND = 0


@dataclass(frozen=True)
class PairProbs:
    """Order-averaged pairwise probabilities of one model of a run."""

    first: list[str]
    """The lesser outcome id of each pair."""
    second: list[str]
    """The greater outcome id of each pair."""
    p: np.ndarray
    """P(first ≻ second), rows of both orientations averaged, shape (m,)."""
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


_TEXT_COLUMNS = frozenset(
    {"note", "excluded", "pivot", "nearest_reference", "chosen", "answer", "method", "source"}
)
"""Analysis columns that hold text even when every value of a file is null (others: float)."""


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


class RunStore:
    """Typed reads and writes of one results root over one reused catalog connection.

    Use as a context manager (or call :meth:`close`); stores are cheap until the first read.
    """

    def __init__(self, root: str | Root, *, memory_limit: str | None = None) -> None:
        self.root = root if isinstance(root, Root) else Root(root)
        self.memory_limit = memory_limit
        """DuckDB memory cap of the connection (e.g. ``"2GB"``); None: DuckDB's default."""
        self._con: duckdb.DuckDBPyConnection | None = None
        self.opened = 0
        """How many times the catalog was opened (tests check it is reused)."""

    # --- the connection ------------------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The catalog connection, opened on first use and after :meth:`refresh`."""
        if self._con is None:
            self._con = connect(self.root, memory_limit=self.memory_limit)
            self.opened += 1
        return self._con

    def refresh(self) -> None:
        """Something new landed under the root: reopen the catalog on the next read."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def close(self) -> None:
        self.refresh()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Our own SQL; a damaged file found only now (object stores) is named in one line."""
        import duckdb

        try:
            return self.con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise diagnose(self.root, exc) from None

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._arrow(sql, params).to_pylist()
        return rows

    def _values(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        table = self._arrow(sql, params)
        return table.column(0).to_pylist() if table.num_columns else []

    def has_view(self, name: str) -> bool:
        return name in self._values("SELECT view_name FROM duckdb_views()")

    def query(self, sql: str, *, timeout_s: float | None = None) -> pa.Table:
        """A user's read-only SQL (refused if it would write, attach, load or copy out), with an
        optional statement timeout in seconds."""
        return run_query(self.con, sql, root=self.root, timeout_s=timeout_s)

    # --- runs and outcomes ---------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Every run under the root, oldest first."""
        return [str(r) for r in self._values("SELECT run_id FROM runs ORDER BY created_at")]

    def related_runs(self, run_id: str) -> list[dict[str, Any]]:
        """The run and the runs derived from it (``<run_id>-…``), oldest first."""
        return self._rows(
            "SELECT run_id, status, prompts, errors, models, created_at FROM runs "
            "WHERE run_id = $r OR starts_with(run_id, $p) ORDER BY created_at",
            {"r": run_id, "p": run_id + "-"},
        )

    def models(self, run_id: str) -> list[str]:
        """Models that have comparisons in a run, sorted."""
        return [
            str(m)
            for m in self._values(
                "SELECT DISTINCT model FROM comparisons WHERE run_id = $r ORDER BY model",
                {"r": run_id},
            )
        ]

    def outcome_ids(self, run_id: str) -> list[str]:
        """The run's outcome ids in stored order (the index order of its pair ids)."""
        return [
            str(o)
            for o in self._values(
                "SELECT outcome_id FROM outcomes WHERE run_id = $r", {"r": run_id}
            )
        ]

    def outcomes(self, run_id: str) -> OutcomeSet:
        """The outcome set of a stored run, from its ``outcomes`` table."""
        from elicit.outcomes import Outcome, OutcomeSet

        rows = [
            (r["outcome_id"], r["text"], r["attributes"])
            for r in self._rows(
                "SELECT outcome_id, text, attributes FROM outcomes WHERE run_id = $r",
                {"r": run_id},
            )
        ]
        if not rows:
            raise ClusterError(
                f"run {run_id!r} has no outcomes table in {self.root.display(self.root.base)}"
            )
        return OutcomeSet(
            run_id,
            tuple(Outcome(o, text, json.loads(a) if a else {}) for o, text, a in rows),
        )

    # --- comparisons ---------------------------------------------------------------------------

    def rounds(self, run_id: str, model: str) -> list[int]:
        """Rounds of one model that have comparisons, ascending."""
        return [
            int(r)
            for r in self._values(
                "SELECT DISTINCT round FROM comparisons WHERE run_id = $r AND model = $m "
                "ORDER BY round",
                {"r": run_id, "m": model},
            )
        ]

    def oriented_stats(
        self,
        run_id: str,
        model: str,
        outcome_ids: Sequence[str],
        rounds: Sequence[int] | None,
        *,
        partial: str = "keep",
    ) -> OrientedStats:
        """Per-presentation counts and mean P(first), through :mod:`fit.data`'s fold SQL;
        ``partial="drop"`` leaves out pairs answered in only one of the orders they were asked in
        (anything folded must)."""
        from fit.data import oriented_stats

        return oriented_stats(
            self.con,
            outcome_ids,
            run_id=run_id,
            model=model,
            rounds=rounds,
            partial="drop" if partial == "drop" else "keep",
        )

    def partial_pairs(
        self, run_id: str, model: str, outcome_ids: Sequence[str], rounds: Sequence[int] | None
    ) -> int:
        """How many pairs were asked in both orders but answered (no error, a P) in only one."""
        from fit.data import partial_pairs

        found = partial_pairs(self.con, outcome_ids, run_id=run_id, model=model, rounds=rounds)
        return len(found)

    def pair_probs(self, run_id: str, model: str) -> PairProbs:
        """P(i ≻ j) per asked pair (every round, held-out included), failed rows skipped; a pair
        answered in only one of the orders it was asked in is left out (:mod:`fit.data`)."""
        from fit.data import pair_stats
        from fit.errors import EmptyDataError

        ids = self.outcome_ids(run_id)
        try:
            stats = pair_stats(self.con, ids, run_id=run_id, model=model, unknown="drop")
        except EmptyDataError:
            return PairProbs([], [], np.zeros(0), np.zeros(0, np.int64))
        return PairProbs(
            [ids[i] for i in stats.i.tolist()],
            [ids[j] for j in stats.j.tolist()],
            np.asarray(stats.p, dtype=np.float64),
            np.asarray(stats.n, dtype=np.float64).astype(np.int64),
        )

    def oriented_rows(self, run_id: str, model: str | None = None) -> dict[str, np.ndarray]:
        """Per-row ``model``, ``p_a`` (P(first)), ``mass`` and ``error`` of a run (position bias
        and answer quality); null floats are NaN."""
        t = self._arrow(
            "SELECT model, p_a, mass, error FROM comparisons WHERE run_id = $r "
            "AND ($m IS NULL OR model = $m)",
            {"r": run_id, "m": model},
        )
        return {name: _column(t, name) for name in t.column_names}

    def answer_stats(self, run_id: str, model: str) -> dict[str, Any]:
        """How a model answered, over all its rows of a run.

        ``first_wins`` share of answered prompts where the first-listed option got P > ½;
        ``mean_p_first``; ``mass`` mean letter mass (logprob mode); ``error_rate`` share of
        rows with an error; ``refusal_rate`` share of rows with no usable answer although the
        request succeeded (no letter at all: P is missing); ``low_mass_rate`` share of logprob
        rows whose two letters got under half the probability (the model wanted to say something
        else); ``unparsed_share`` share of sampled completions that held no letter (sample and
        reasoning modes; null in logprob mode); ``rows``.
        """
        return self._rows(
            """SELECT avg(CASE WHEN p_a > 0.5 THEN 1.0 WHEN p_a <= 0.5 THEN 0.0 END) AS first_wins,
                      avg(p_a) FILTER (WHERE NOT isnan(p_a)) AS mean_p_first,
                      avg(mass) FILTER (WHERE NOT isnan(mass)) AS mass,
                      avg(CASE WHEN error IS NULL THEN 0.0 ELSE 1.0 END) AS error_rate,
                      avg(CASE WHEN error IS NULL AND (p_a IS NULL OR isnan(p_a)) THEN 1.0
                               WHEN error IS NULL THEN 0.0 END) AS refusal_rate,
                      avg(CASE WHEN error IS NULL AND mass < 0.5 THEN 1.0
                               WHEN error IS NULL AND mass >= 0.5 THEN 0.0 END) AS low_mass_rate,
                      sum(n_unparsed)::DOUBLE
                        / nullif(sum(n_a) + sum(n_b) + sum(n_unparsed), 0) AS unparsed_share,
                      count(*) AS rows
               FROM comparisons WHERE run_id = $run AND model = $model""",
            {"run": run_id, "model": model},
        )[0]

    # --- fits and utilities --------------------------------------------------------------------

    def fits(self, run_id: str, model: str | None = None) -> list[dict[str, Any]]:
        """``fits`` rows of a run (one model or all), oldest first."""
        return self._rows(
            "SELECT * FROM fits WHERE run_id = $r AND ($m IS NULL OR model = $m) "
            "ORDER BY model, created_at",
            {"r": run_id, "m": model},
        )

    def latest_fit(self, run_id: str, model: str) -> dict[str, Any]:
        """The latest ``fits`` row of one model of a run (empty when there is none)."""
        rows = self.fits(run_id, model)
        return rows[-1] if rows else {}

    def latest_fits(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Run id → {"fit": latest fits row, "mu": outcome id → μ} for several runs."""
        rows = self._rows(
            "SELECT * FROM fits WHERE list_contains($ids, run_id) ORDER BY created_at",
            {"ids": list(run_ids)},
        )
        latest = {r["run_id"]: r for r in rows}
        return {
            run_id: {"fit": fit, "mu": self.utilities(run_id, fit["model"], fit["fit_id"])}
            for run_id, fit in latest.items()
        }

    def utilities(self, run_id: str, model: str, fit_id: str | None = None) -> dict[str, float]:
        """Outcome id → μ of a fit (default: the model's latest); outcomes without μ left out."""
        if fit_id is None:
            fit = self.latest_fit(run_id, model)
            if not fit:
                raise ClusterError(
                    f"run {run_id!r}, model {model!r} has no fit; `valuescope fit {run_id}` fits it"
                )
            fit_id = fit["fit_id"]
        rows = self._rows(
            "SELECT outcome_id, mu FROM utilities WHERE run_id = $r AND model = $m "
            "AND fit_id = $f AND mu IS NOT NULL",
            {"r": run_id, "m": model, "f": fit_id},
        )
        return {str(r["outcome_id"]): float(r["mu"]) for r in rows}

    def utility_rows(self, run_id: str, model: str, fit_id: str) -> list[dict[str, Any]]:
        """A fit's utilities with outcome text and (simulated runs) true utility, best first."""
        return self._rows(
            """SELECT u.outcome_id, o.text, u.mu, u.mu_lo, u.mu_hi, u.sigma2, o.true_utility
               FROM utilities u LEFT JOIN outcomes o
                 ON o.run_id = u.run_id AND o.outcome_id = u.outcome_id
               WHERE u.run_id = $run AND u.model = $model AND u.fit_id = $fit
               ORDER BY u.mu DESC""",
            {"run": run_id, "model": model, "fit": fit_id},
        )

    # --- analysis tables -----------------------------------------------------------------------

    def analysis_rows(self, view: str, run_id: str, model: str) -> list[dict[str, Any]]:
        """Rows of an analysis view for one model of a run ([] when the view does not exist)."""
        if not self.has_view(view):
            return []
        return self._rows(
            f'SELECT * FROM "{view}" WHERE run_id = $r AND model = $m',
            {"r": run_id, "m": model},
        )

    def analysis_results(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """Result view → latest row per (run, model) of the run, its derived runs, or runs that
        name it as base run."""
        found: dict[str, list[dict[str, Any]]] = {}
        for view, (glob, _files) in sorted(analysis_views(self.root).items()):
            if not glob.endswith("/result.parquet") or not self.has_view(view):
                continue  # a detail table (or one that landed after the connection opened)
            latest: dict[tuple[str, str], dict[str, Any]] = {}
            for r in self._rows(f'SELECT * FROM "{view}" ORDER BY created_at'):
                if (
                    r.get("run_id") == run_id
                    or r.get("base_run_id") == run_id
                    or str(r.get("run_id", "")).startswith(run_id + "-")
                ):
                    latest[(r["run_id"], r["model"])] = r  # a rerun replaces the earlier row
            if latest:
                found[view] = list(latest.values())
        return found

    def analysis_details(
        self, analysis: str, run_ids: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Detail tables of an analysis (view ``analysis_<analysis>_<table>``) → their rows for
        the given runs, latest write of each (run, model) only."""
        out: dict[str, list[dict[str, Any]]] = {}
        prefix = f"analysis_{analysis}_"
        for view, (glob, _files) in sorted(analysis_views(self.root).items()):
            if (
                not view.startswith(prefix)
                or glob.endswith("/result.parquet")
                or not self.has_view(view)
            ):
                continue
            rows = self._rows(
                f'SELECT * FROM "{view}" WHERE list_contains($ids, run_id) ORDER BY created_at',
                {"ids": list(run_ids)},
            )
            last = {}
            for r in rows:  # a rerun's rows replace the earlier ones of that (run, model)
                last[(r["run_id"], r["model"])] = r["created_at"]
            kept = [r for r in rows if r["created_at"] == last[(r["run_id"], r["model"])]]
            if kept:
                out[view.removeprefix(prefix)] = kept
        return out

    # --- writers -------------------------------------------------------------------------------

    def write_table(self, path: str, kind: str, table: pa.Table) -> None:
        """Write one of the core tables (``utilities``, ``fits``, …) atomically."""
        write_table(self.root, path, kind, table)
        self.refresh()

    def write_core(self, kind: str, path: str, columns: dict[str, Any], num_rows: int) -> pa.Table:
        """Build a core table from columns (schema checked) and write it."""
        table = to_table(kind, columns, num_rows=num_rows)
        self.write_table(path, kind, table)
        return table

    def write_analysis_table(
        self,
        analysis: str,
        run_id: str,
        base_run_id: str,
        model: str,
        table: str,
        rows: Sequence[dict[str, Any]],
    ) -> str:
        """Write rows as ``<root>/analyses/<analysis>/run_id=…/model=…/<table>.parquet``.

        Every row gets ``analysis``, ``run_id``, ``base_run_id`` and ``model`` first and
        ``created_at`` last; NaN becomes null; lists and mappings become JSON text.
        """
        head = {"analysis": analysis, "run_id": run_id, "base_run_id": base_run_id, "model": model}
        now = dt.datetime.now(dt.UTC)
        full = [{**head, **{k: _clean(v) for k, v in r.items()}, "created_at": now} for r in rows]
        names: list[str] = []
        for r in full:
            names.extend(k for k in r if k not in names)
        columns = {n: [r.get(n) for r in full] for n in names}
        schema = pa.schema([(n, _arrow_type(n, columns[n])) for n in names]).with_metadata(
            {"valuescope.table": f"analysis_{analysis}_{table}", "valuescope.schema_version": "1"}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns, schema=schema), sink, compression="zstd")
        path = RunLayout(self.root, run_id).analysis(analysis, model, table)
        self.root.write_atomic(path, sink.getvalue())
        self.refresh()
        return path
