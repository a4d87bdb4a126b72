"""The DuckDB catalog: SQL views over a results root, read-only.

Views: ``comparisons``, ``utilities``, ``fits``, ``outcomes``, ``round_pairs`` (Parquet files) and ``runs`` (one
row per run manifest), ``sweeps`` and ``sweep_similarity`` (sweep summaries), plus any extra table
a later stage registers, and one view per analysis table found under ``<root>/analyses/``:
``analysis_<name>`` (the one-row-per-model ``result.parquet`` files) and
``analysis_<name>_<table>`` (detail tables such as ``triads.parquet``).
Local roots are read with DuckDB's own Parquet reader; ``s3://`` roots through
``pyarrow.dataset`` over the same filesystem layer (DuckDB scans Arrow datasets with filter
push-down, and no DuckDB extension has to be downloaded).

Queries are read-only twice over: only SELECT-like statements are accepted (anything that
would write, attach, install, load or copy out is refused before it runs), and the connection
is locked so it cannot touch files outside the root. DuckDB's spill folder is switched off,
since the lock lets a connection read its spill folder and the default one is ``<cwd>/.tmp``:
a query reads only the root. For a catalog served to others, :func:`connect` takes a memory
cap and :func:`run_query` a statement timeout (both off by default); a query that runs past
either stops with :class:`~storage.errors.QueryLimitError`.

A damaged Parquet file (truncated, not Parquet) stops the catalog with one line naming the file
and the command that repairs it (:class:`~storage.errors.CorruptFileError`), never a traceback.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from storage.errors import QueryLimitError, ReadOnlyQueryError, StorageError
from storage.fs import Root
from storage.integrity import corrupt_error, verify_files
from storage.layout import table_glob
from storage.manifest import list_manifests
from storage.schemas import TABLES, schema_for

#: Views over folders written by cluster-level tools (a sweep's per-model summary and the
#: similarity of its models' utilities); view name = folder name under the root.
SUMMARY_VIEWS = ("sweeps", "sweep_similarity")
VIEWS = ("comparisons", "utilities", "fits", "outcomes", "round_pairs", "runs", *SUMMARY_VIEWS)
_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _runs_table(root: Root) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for m in list_manifests(root):
        models = sorted({r.model for r in m.rounds})
        rows.append(
            {
                "run_id": m.run_id,
                "status": m.status,
                "created_at": m.created_at,
                "updated_at": m.updated_at,
                "spec_hash": m.spec_hash,
                "git_revision": m.git_revision,
                "simulated": m.simulated,
                "models": json.dumps(models),
                "prompts": sum(r.prompts for r in m.rounds),
                "errors": sum(r.errors for r in m.rounds),
                "spec": json.dumps(m.spec, sort_keys=True),
                "versions": json.dumps(m.versions, sort_keys=True),
            }
        )
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("created_at", pa.string()),
            ("updated_at", pa.string()),
            ("spec_hash", pa.string()),
            ("git_revision", pa.string()),
            ("simulated", pa.bool_()),
            ("models", pa.string()),
            ("prompts", pa.int64()),
            ("errors", pa.int64()),
            ("spec", pa.string()),
            ("versions", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _table_files(root: Root, table: str) -> list[str]:
    if table == "outcomes":
        return root.list_files(root.path("runs"), "outcomes.parquet")
    return root.list_files(root.path(table), ".parquet")


_VIEW_PART = re.compile(r"[^A-Za-z0-9_]+")


def analysis_views(root: Root) -> dict[str, tuple[str, list[str]]]:
    """Analysis tables under ``<root>/analyses/``: view name → (local glob, files).

    ``<root>/analyses/<name>/run_id=…/model=…/<table>.parquet`` becomes the view
    ``analysis_<name>`` when ``<table>`` is ``result``, else ``analysis_<name>_<table>``.
    """
    base = root.path("analyses")
    found: dict[str, tuple[str, list[str]]] = {}
    for path in root.list_files(base, ".parquet"):
        parts = path[len(base) + 1 :].split("/")
        if len(parts) != 4:
            continue
        name, table = parts[0], parts[3].removesuffix(".parquet")
        view = "analysis_" + _VIEW_PART.sub("_", name)
        if table != "result":
            view += "_" + _VIEW_PART.sub("_", table)
        glob = root.path("analyses", name, "*", "*", f"{table}.parquet")
        found.setdefault(view, (glob, []))[1].append(path)
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(
    root: str | Root,
    *,
    extra_tables: dict[str, str] | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog's views over ``root``, locked read-only.

    Args:
        root: results root (folder or ``s3://``).
        extra_tables: more views, name → table folder under the root (e.g. analysis tables).
        memory_limit: memory cap of the connection's queries (DuckDB syntax: ``"512MB"``,
            ``"4GB"``); None keeps DuckDB's default (80 % of RAM). Nothing spills to disk, so a
            query past the cap stops with :class:`~storage.errors.QueryLimitError`.

    Raises:
        CorruptFileError: a Parquet file under the root is damaged (the message names it and
            the command that repairs it).
    """
    root = root if isinstance(root, Root) else Root(root)
    root.check_readable()  # a missing folder or bucket is an error, not an empty catalog
    con = duckdb.connect(":memory:")
    try:
        _create_views(con, root, extra_tables or {})
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        con.close()
        raise diagnose(root, exc) from None
    con.register("_runs", _runs_table(root))
    con.execute('CREATE VIEW "runs" AS SELECT * FROM "_runs"')
    # The lock below still lets DuckDB read its spill folder (by default <cwd>/.tmp, i.e.
    # whatever the user keeps there): switch spilling off so the root is all a query can read.
    con.execute("SET temp_directory = ''")
    if memory_limit is not None:
        try:
            con.execute(f"SET memory_limit = {_quote(memory_limit)}")
        except duckdb.Error:
            con.close()
            raise StorageError(
                f"memory cap {memory_limit!r} is not a size DuckDB understands; "
                "write it like '512MB' or '4GB'"
            ) from None
    if root.is_local:
        con.execute(f"SET allowed_directories = [{_quote(root.base)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _create_views(con: duckdb.DuckDBPyConnection, root: Root, extra: dict[str, str]) -> None:
    tables = {name: name for name in TABLES}
    tables.update({name: name for name in SUMMARY_VIEWS})
    tables.update(extra)
    for view, folder in tables.items():
        files = _table_files(root, folder)
        if not files:
            schema = schema_for(view) if view in TABLES else pa.schema([("run_id", pa.string())])
            con.register(f"_empty_{view}", schema.empty_table())
            con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_empty_{view}"')
        elif root.is_local:
            glob = (
                table_glob(root, folder)
                if folder in TABLES
                else root.path(folder, "**", "*.parquet")
            )
            con.execute(
                f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet({_quote(glob)}, '
                "union_by_name = true, hive_partitioning = false)"
            )
        else:
            dataset = pads.dataset(files, filesystem=root.fs, format="parquet")
            con.register(f"_ds_{view}", dataset)
            con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_ds_{view}"')
    for view, (glob, files) in analysis_views(root).items():
        if root.is_local:
            con.execute(
                f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet({_quote(glob)}, '
                "union_by_name = true, hive_partitioning = false)"
            )
        else:
            # Analysis tables have ad-hoc schemas that may differ between files (a column
            # that is null everywhere in one file): read them under one unified schema.
            schemas = [pq.read_schema(f, filesystem=root.fs) for f in files]
            schema = pa.unify_schemas(schemas, promote_options="permissive")
            dataset = pads.dataset(files, schema=schema, filesystem=root.fs, format="parquet")
            con.register(f"_ds_{view}", dataset)
            con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_ds_{view}"')


def diagnose(root: str | Root, exc: BaseException) -> StorageError:
    """The one-line error for a failure while reading the catalog.

    A damaged Parquet file under the root becomes :class:`~storage.errors.CorruptFileError`
    (naming the file and its repair); anything else a :class:`StorageError` with the first line
    of the engine's message. Use it on any error of a catalog connection's query::

        except duckdb.Error as exc:
            raise diagnose(root, exc) from None
    """
    root = root if isinstance(root, Root) else Root(root)
    text = str(exc)
    if isinstance(exc, pa.ArrowException | OSError) or re.search("parquet|file", text, re.I):
        # A read failed: find the damaged file (the one the message names, else any).
        sizes = root.file_sizes(root.base, ".parquet")
        named = {p: n for p, n in sizes.items() if p in text}
        damaged = verify_files(root, named) if named else {}
        if not damaged:
            damaged = verify_files(root, sizes)
        if damaged:
            path = sorted(damaged)[0]
            return corrupt_error(root, path, damaged[path], others=len(damaged) - 1)
    # The engine's message in one line (the query echo and its caret marks dropped).
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith("LINE ") and set(ln.strip()) != {"^"}
    ]
    return StorageError(f"SQL error: {'; '.join(lines) if lines else type(exc).__name__}")


def check_read_only(query: str) -> None:
    """Refuse any statement that is not a query (write, attach, install, load, copy, set…)."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(query)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"SQL does not parse: {exc}") from None
    if not statements:
        raise ReadOnlyQueryError("no SQL statement given")
    for statement in statements:
        kind = statement.type
        text = statement.query.strip()
        if kind == duckdb.StatementType.EXPLAIN:
            inner = text.split(None, 1)[1] if " " in text else ""
            if inner.upper().startswith("ANALYZE"):
                inner = inner.split(None, 1)[1] if " " in inner else ""
            check_read_only(inner)
            continue
        if kind not in _ALLOWED:
            name = str(kind).rsplit(".", 1)[-1]
            raise ReadOnlyQueryError(
                f"refused {name} statement {text[:60]!r}: the results catalog is read-only; "
                "only SELECT queries (and EXPLAIN) are allowed. To export, use "
                "`valuescope sql ... --format parquet > file.parquet`"
            )


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    root: str | Root,
    timeout_s: float | None = None,
) -> pa.Table:
    """Run a read-only query on a catalog connection (from :func:`connect`) as an Arrow table.

    Args:
        con: the catalog connection.
        sql: the user's SQL (refused unless SELECT-like).
        root: the connection's results root (to name a damaged file in the error).
        timeout_s: statement timeout; the query is interrupted after it. None: no timeout.

    Raises:
        ReadOnlyQueryError: the statement would write, attach, load or copy out.
        QueryLimitError: past the timeout or the connection's memory cap.
        CorruptFileError: a damaged Parquet file (named, with its repair).
        StorageError: any other SQL error, in one line.
    """
    check_read_only(sql)
    if timeout_s is not None and not timeout_s > 0:
        raise StorageError(f"statement timeout {timeout_s!r} s: give a positive number of seconds")
    state = {"done": False, "fired": False}
    lock = threading.Lock()

    def stop() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                con.interrupt()

    timer = threading.Timer(timeout_s, stop) if timeout_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.InterruptException:
        if state["fired"]:
            raise QueryLimitError(
                f"query stopped after the statement timeout of {timeout_s:g} s; "
                "narrow it (filter on run_id or model) or raise the timeout"
            ) from None
        raise
    except duckdb.OutOfMemoryException:
        cap = con.execute("SELECT current_setting('memory_limit')").fetchone()
        raise QueryLimitError(
            f"query needs more memory than the catalog's cap ({cap[0] if cap else '?'}); "
            "narrow it (filter, aggregate, LIMIT) or raise the memory cap"
        ) from None
    except duckdb.Error as exc:
        raise diagnose(root, exc) from None
    finally:
        with lock:
            state["done"] = True
        if timer is not None:
            timer.cancel()


def query(
    root: str | Root,
    sql: str,
    *,
    timeout_s: float | None = None,
    memory_limit: str | None = None,
) -> pa.Table:
    """Run a read-only SQL query over a results root and return an Arrow table.

    ``timeout_s`` and ``memory_limit`` are the optional limits of :func:`run_query` and
    :func:`connect` (off by default).
    """
    check_read_only(sql)
    root = root if isinstance(root, Root) else Root(root)
    con = connect(root, memory_limit=memory_limit)
    try:
        return run_query(con, sql, root=root, timeout_s=timeout_s)
    finally:
        con.close()
