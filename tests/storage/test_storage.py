from __future__ import annotations

import datetime as dt
import os

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import storage
from storage import Root, RunLayout, model_key
from storage.catalog import check_read_only, connect, query
from storage.errors import (
    ReadOnlyQueryError,
    RootUnreachableError,
    SchemaMismatchError,
    StorageError,
)
from storage.manifest import new_manifest, read_manifest, write_manifest
from storage.schemas import SCHEMA_VERSION, schema_for, to_table
from storage.writer import PartWriter, read_table, write_table


def comparisons(
    n: int, run_id: str = "r1", model: str = "m", round_: int = 0, shard: int = 0
) -> pa.Table:
    rng = np.random.default_rng(shard)
    p = rng.random(n)
    return to_table(
        "comparisons",
        {
            "run_id": run_id,
            "model": model,
            "round": round_,
            "shard": shard,
            "pair_id": np.arange(n),
            "outcome_a": [f"o{i % 7}" for i in range(n)],
            "outcome_b": [f"o{(i + 1) % 7}" for i in range(n)],
            "orientation": np.zeros(n, dtype=np.int8),
            "template_id": "default",
            "mode": "logprob",
            "p_a": p,
            "p_b": 1 - p,
            "latency_ms": np.ones(n, dtype=np.float32),
            "created_at": dt.datetime.now(dt.UTC),
        },
        num_rows=n,
    )


def test_schema_metadata_and_versions():
    schema = schema_for("comparisons")
    assert schema.metadata[b"valuescope.table"] == b"comparisons"
    assert schema.metadata[b"valuescope.schema_version"] == str(SCHEMA_VERSION).encode()
    # The column contract every reader relies on.
    assert schema.names[:4] == ["run_id", "model", "round", "shard"]
    for col in ("p_a", "p_b", "lp_a", "lp_b", "mass", "n_a", "n_b", "n_unparsed", "error"):
        assert col in schema.names


def test_to_table_rejects_unknown_and_missing_required():
    with pytest.raises(SchemaMismatchError, match="no column"):
        to_table("fits", {"run_id": ["r"], "bogus": [1]})
    with pytest.raises(SchemaMismatchError, match="required column"):
        to_table("fits", {"run_id": ["r"], "model": [None], "fit_id": ["f"], "estimator": ["bt"]})


def test_to_table_nan_becomes_null():
    t = comparisons(3)
    t2 = to_table(
        "utilities",
        {
            "run_id": "r",
            "model": "m",
            "fit_id": "f",
            "outcome_id": ["a", "b"],
            "mu": np.array([np.nan, 1.0]),
        },
        num_rows=2,
    )
    assert t2.column("mu").null_count == 1
    assert t.num_rows == 3


def test_layout_paths_and_model_key(root):
    layout = RunLayout(Root(root), "run-1")
    assert layout.part("meta-llama/Llama-3.1-8B", 2, 7).endswith(
        "comparisons/run_id=run-1/model=meta-llama--Llama-3.1-8B/round=0002/part-00007.parquet"
    )
    assert model_key("a b/c") == "a_b--c"
    with pytest.raises(StorageError, match="run id"):
        RunLayout(Root(root), "../escape")


def test_part_writer_commit_and_done_shards(root):
    r = Root(root)
    layout = RunLayout(r, "r1")
    for shard in (0, 3):
        with PartWriter(r, layout.part("m", 0, shard), "comparisons") as w:
            w.write(comparisons(10, shard=shard))
    assert layout.done_shards("m", 0) == {0, 3}
    back = read_table(r, layout.part("m", 0, 3))
    assert back.num_rows == 10
    assert back.schema.metadata[b"valuescope.table"] == b"comparisons"


def test_part_writer_failure_leaves_nothing_visible(root, monkeypatch):
    r = Root(root)
    layout = RunLayout(r, "r1")
    path = layout.part("m", 0, 1)
    # Failure inside the with-block: nothing is written.
    with pytest.raises(RuntimeError), PartWriter(r, path, "comparisons") as w:
        w.write(comparisons(5))
        raise RuntimeError("crash mid-shard")
    assert not os.path.exists(path)

    # Failure in the middle of writing the bytes (disk full, killed): the rename never happens
    # and the temporary file is removed.
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(RootUnreachableError, match="cannot write"):
        write_table(r, path, "comparisons", comparisons(5))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not os.path.exists(path)
    assert os.listdir(os.path.dirname(path)) == []
    assert layout.done_shards("m", 0) == set()


def test_part_writer_rejects_wrong_schema(root):
    r = Root(root)
    bad = pa.table({"run_id": ["r"]})
    with (
        pytest.raises(SchemaMismatchError, match="missing column"),
        PartWriter(r, RunLayout(r, "r1").part("m", 0, 0), "comparisons") as w,
    ):
        w.write(bad)


def test_manifest_roundtrip(root):
    layout = RunLayout(Root(root), "r1")
    assert read_manifest(layout) is None
    m = new_manifest("r1", {"a": 1}, simulated=True)
    m.round_status("m", 0).shards_total = 4
    write_manifest(layout, m)
    back = read_manifest(layout)
    assert back is not None and back.spec_hash == m.spec_hash and back.simulated
    assert back.rounds[0].shards_total == 4
    assert "pyarrow" in back.versions


def test_catalog_views_sql_and_polars(root):
    r = Root(root)
    layout = RunLayout(r, "r1")
    for shard in range(3):
        write_table(
            r,
            layout.part("org/model", 0, shard),
            "comparisons",
            comparisons(100, model="org/model", shard=shard),
        )
    write_manifest(layout, new_manifest("r1", {"x": 1}))
    out = query(root, "SELECT model, count(*) AS n FROM comparisons GROUP BY model")
    assert out.to_pylist() == [{"model": "org/model", "n": 300}]
    assert query(root, "SELECT count(*) AS n FROM utilities").to_pylist() == [{"n": 0}]
    assert query(root, "SELECT run_id FROM runs").to_pylist() == [{"run_id": "r1"}]
    lf = storage.scan(root, "comparisons")
    assert lf.filter(pl.col("shard") == 1).select(pl.len()).collect().item() == 100


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO 'out.csv'",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO comparisons SELECT * FROM comparisons",
        "ATTACH 'other.duckdb'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW comparisons",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'",
        "EXPORT DATABASE 'dir'",
        "PRAGMA enable_profiling",
    ],
)
def test_sql_refuses_writes(root, sql):
    with pytest.raises(ReadOnlyQueryError, match="read-only|does not parse"):
        query(root, sql)
    assert os.listdir(root) == []


def test_connection_cannot_read_outside_root(root):
    con = connect(root)
    with pytest.raises(duckdb.Error):
        con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")


def test_check_read_only_accepts_queries():
    check_read_only(
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x; EXPLAIN SELECT 1; DESCRIBE SELECT 1"
    )


def test_missing_root_is_clear(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        query(str(tmp_path / "nope"), "SELECT 1")


def test_unsupported_scheme():
    with pytest.raises(RootUnreachableError, match="unsupported scheme"):
        Root("gs://bucket/x")


def test_temporary_files_never_match_table_globs(root, monkeypatch):
    """A reader that globs *.parquet while a writer is mid-write must not see the temp file."""
    import glob as globmod

    r = Root(root)
    layout = RunLayout(r, "r1")
    path = layout.part("m", 0, 0)
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        if dst.endswith(".parquet"):  # the part itself (its commit record follows it)
            seen.extend(
                globmod.glob(os.path.join(os.path.dirname(dst), "*.parquet"), include_hidden=True)
            )
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_table(r, path, "comparisons", comparisons(3))
    assert seen == []
