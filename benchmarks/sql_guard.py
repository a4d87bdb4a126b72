"""Hostile SQL against a real results root: does anything get written, attached, loaded or read
from outside the root?

A small simulated run (the installed ``valuescope``, a private local Ray) makes the root. A
canary file with a random token sits next to it, in the working directory's ``.tmp`` (DuckDB's
default spill folder), and behind a symbolic link planted inside the root; a query *leaks*
when the token shows up in its result. Each statement is then run as ``valuescope sql`` does
(:func:`storage.catalog.query`, with the statement timeout and memory cap where the attempt is
about resources). An attempt is *refused* when it ends in one line of ``StorageError``; it
*wrote* when any file under the root, or any file it names, changed.

Run: ``.venv/bin/python benchmarks/sql_guard.py`` (one line per attempt, then the tally).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


@dataclass(frozen=True)
class Attempt:
    group: str
    sql: str
    timeout_s: float | None = None
    memory_limit: str | None = None


def attempts(root: str, outside: str) -> list[Attempt]:
    """``outside``: a folder next to the root holding ``canary.csv``; ``root`` holds
    ``link.csv``, a symbolic link to that canary."""
    canary = f"{outside}/canary.csv"
    writes = [
        "CREATE TABLE t AS SELECT 1 AS a",
        "CREATE VIEW v AS SELECT 1",
        "CREATE OR REPLACE VIEW comparisons AS SELECT 1 AS x",
        "DROP VIEW comparisons",
        "INSERT INTO comparisons SELECT * FROM comparisons",
        "UPDATE comparisons SET p_a = 0",
        "DELETE FROM comparisons",
        "ALTER VIEW comparisons RENAME TO c2",
        "CREATE MACRO m(x) AS x + 1",
        "CREATE SEQUENCE s",
        "CREATE TEMP TABLE t AS SELECT 1",
        f"COPY (SELECT 1) TO '{root}/x.csv'",
        f"COPY (SELECT * FROM comparisons) TO '{outside}/out.parquet' (FORMAT parquet)",
        f"EXPORT DATABASE '{outside}/export'",
        "WITH x AS (SELECT 1) INSERT INTO comparisons SELECT * FROM x",
        "SELECT 1; DROP VIEW comparisons",
        "SELECT 1 /* ; */ ; CREATE TABLE t(a INT)",
        "select 1;\n\ncreate table t(a int)",
        "CHECKPOINT",
        "VACUUM",
    ]
    attach = [
        "ATTACH ':memory:' AS m",
        f"ATTACH '{outside}/x.duckdb' AS x",
        "DETACH memory",
        "USE memory",
        "INSTALL httpfs",
        "LOAD httpfs",
        "INSTALL sqlite FROM 'http://127.0.0.1:9/'",
        "FORCE INSTALL json",
        "LOAD '/tmp/evil.duckdb_extension'",
    ]
    settings = [
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET allowed_paths = ['/etc/passwd']",
        "SET lock_configuration = false",
        "RESET enable_external_access",
        "SET temp_directory = '.tmp'",
        "SET memory_limit = '100TB'",
        f"SET profiling_output = '{outside}/prof.json'",
        "PRAGMA enable_profiling",
        "PRAGMA disable_checkpoint_on_shutdown",
        "SET threads = 1000",
        "CALL pragma_version()",
    ]
    reads = [
        f"SELECT * FROM read_csv('{canary}')",
        f"SELECT * FROM read_csv_auto('{canary}')",
        f"SELECT * FROM '{canary}'",
        f"SELECT * FROM read_text('{canary}')",
        f"SELECT * FROM read_blob('{canary}')",
        f"SELECT * FROM read_json('{canary}')",
        f"SELECT * FROM read_parquet('{outside}/*.parquet')",
        f"SELECT * FROM glob('{outside}/*')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        f"SELECT * FROM read_csv('{root}/../{Path(outside).name}/canary.csv')",
        f"SELECT * FROM read_csv('{root}/link.csv')",
        f"SELECT * FROM read_text('{root}/link.csv')",
        f"SELECT * FROM read_text('{root}/*')",
        "SELECT * FROM read_csv('.tmp/canary.csv')",
        "SELECT * FROM read_text('.tmp/canary.csv')",
        f"SELECT * FROM read_csv('file://{canary}')",
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
        "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
        "SELECT getenv('HOME')",
        "SELECT * FROM duckdb_settings() WHERE name = 'temp_directory'",
        f"SELECT * FROM sniff_csv('{canary}')",
        f"SELECT * FROM parquet_metadata('{outside}/x.parquet')",
        f"DESCRIBE SELECT * FROM '{canary}'",
        f"EXPLAIN SELECT * FROM read_csv('{canary}')",
        f"SUMMARIZE SELECT * FROM read_csv('{canary}')",
    ]
    resources = [
        Attempt("resources", "SELECT count(*) FROM range(100000000000)", timeout_s=1.0),
        Attempt(
            "resources",
            "SELECT count(*) FROM range(100000000) a, range(1000) b",
            timeout_s=1.0,
        ),
        Attempt(
            "resources",
            "SELECT list(i) FROM range(200000000) t(i)",
            memory_limit="100MB",
        ),
        Attempt(
            "resources",
            "SELECT i, string_agg(i::VARCHAR, ',') FROM range(50000000) t(i) GROUP BY i",
            memory_limit="100MB",
        ),
    ]
    return (
        [Attempt("writes", s) for s in writes]
        + [Attempt("attach/load", s) for s in attach]
        + [Attempt("settings", s) for s in settings]
        + [Attempt("reads outside the root", s) for s in reads]
        + resources
    )


def snapshot(*folders: str) -> dict[str, tuple[int, int]]:
    out = {}
    for folder in folders:
        for dirpath, dirs, names in os.walk(folder):
            for name in names + dirs:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                out[path] = (st.st_size, st.st_mtime_ns)
    return out


def make_root(work: Path) -> str:
    root = str(work / "results")
    few = work / "few.yaml"
    few.write_text("".join(f"- {{id: o{i}, text: 'Outcome {i}.'}}\n" for i in range(6)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    subprocess.run(
        [EXE, "run", "--model", "simulated", "--outcomes", str(few), "--design", "full",
         "--root", root, "--progress", "none"],
        check=True, capture_output=True, env=env, cwd=work, timeout=600,
    )  # fmt: skip
    return root


def main() -> None:
    from storage.catalog import query
    from storage.errors import StorageError

    token = "canary-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="vs-sql-") as tmp:
        work = Path(tmp)
        root = make_root(work)
        outside = work / "outside"
        outside.mkdir()
        (outside / "canary.csv").write_text(f"secret\n{token}\n")
        (work / ".tmp").mkdir()
        (work / ".tmp" / "canary.csv").write_text(f"secret\n{token}\n")
        os.symlink(outside / "canary.csv", os.path.join(root, "link.csv"))
        os.chdir(work)
        tried = refused = leaked = wrote = ran = 0
        for a in attempts(root, str(outside)):
            before = snapshot(root, str(outside))
            try:
                table = query(root, a.sql, timeout_s=a.timeout_s, memory_limit=a.memory_limit)
            except StorageError as exc:
                verdict, detail = "refused", str(exc)
                refused += 1
                assert "\n" not in detail.strip(), detail
            else:
                text = str(table.to_pylist())
                verdict, detail = ("LEAKED", text[:120]) if token in text else ("ran", text[:80])
                leaked += token in text
                ran += token not in text
            changed = snapshot(root, str(outside)) != before
            wrote += changed
            tried += 1
            mark = " WROTE" if changed else ""
            print(f"{a.group:24} {verdict:8}{mark} {a.sql[:70]!r}: {detail[:110]}")
        print(
            f"SQL attempts: {tried}; refused in one line: {refused}; ran harmlessly: {ran}; "
            f"leaked the canary: {leaked}; wrote a file: {wrote}"
        )


if __name__ == "__main__":
    main()
