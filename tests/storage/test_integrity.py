"""Parts that prove they are whole, names that cannot collide, and the SQL catalog's limits.

Every damaged file here is a real part written by the real writer, then truncated or replaced
on disk; queries run on real DuckDB; the CLI checks run the installed ``valuescope``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time

import duckdb
import pyarrow.parquet as pq
import pytest
from test_storage import comparisons

from storage import Root, RunLayout
from storage.catalog import connect, query, run_query
from storage.errors import CorruptFileError, NameCollisionError, QueryLimitError, StorageError
from storage.integrity import read_record, record_path, set_aside, verify_part
from storage.layout import check_keys
from storage.manifest import new_manifest, write_manifest
from storage.writer import write_table

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


def write_round(root: str, shards: int = 3, rows: int = 50) -> RunLayout:
    r = Root(root)
    layout = RunLayout(r, "r1")
    for shard in range(shards):
        write_table(r, layout.part("m", 0, shard), "comparisons", comparisons(rows, shard=shard))
    write_manifest(layout, new_manifest("r1", {"x": 1}, simulated=True))
    return layout


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, first, second",
    [
        (["sim a", "other", "sim_a"], "sim a", "sim_a"),
        (["a/b", "a--b"], "a/b", "a--b"),
        (["Qwen/Q-7B", "qwen/q-7b"], "Qwen/Q-7B", "qwen/q-7b"),
        (["x.", "x"], "x.", "x"),
    ],
)
def test_colliding_model_names_are_refused_naming_both(names, first, second):
    with pytest.raises(NameCollisionError) as info:
        check_keys(names)
    message = str(info.value)
    assert "\n" not in message
    assert repr(first) in message and repr(second) in message


def test_distinct_names_pass_and_duplicates_and_runs_are_checked():
    check_keys(["smollm2-135m", "meta-llama/Llama-3.1-8B", "simulated", "sim_b"])
    with pytest.raises(NameCollisionError, match="listed twice"):
        check_keys(["a", "a"])
    check_keys(["run-1", "run-2"], kind="run")
    with pytest.raises(NameCollisionError, match="'Run-1' and 'run-1'"):
        check_keys(["Run-1", "run-1"], kind="run")
    with pytest.raises(StorageError, match="run id"):
        check_keys(["../x"], kind="run")


# --- commit records and verification -------------------------------------------------------------


def test_commit_records_the_rows_and_bytes_of_each_part(root):
    layout = write_round(root, shards=2, rows=40)
    path = layout.part("m", 0, 1)
    record = read_record(layout.root, path)
    assert record is not None and not isinstance(record, str)
    assert record.rows == 40 == pq.read_metadata(path).num_rows
    assert record.bytes == os.path.getsize(path)
    assert verify_part(layout.root, path) is None
    # The record is invisible to table listings and globs.
    assert layout.root.list_files(layout.comparisons_dir("m", 0), ".parquet") == [
        layout.part("m", 0, 0),
        path,
    ]
    assert query(root, "SELECT count(*) AS n FROM comparisons").to_pylist() == [{"n": 80}]


def test_truncated_part_is_not_done_and_a_rewrite_makes_it_done(root):
    layout = write_round(root)
    path = layout.part("m", 0, 1)
    truncate(path)
    problem = verify_part(layout.root, path)
    assert problem is not None and "truncated" in problem
    check = layout.check_shards("m", 0)
    assert check.done == {0, 2}
    assert list(check.damaged) == [1] and check.damaged[1][0] == path
    assert layout.done_shards("m", 0) == {0, 2}  # resume recomputes shard 1
    # The recomputation overwrites the part and its record: whole again.
    write_table(layout.root, path, "comparisons", comparisons(50, shard=1))
    assert layout.done_shards("m", 0) == {0, 1, 2}


def test_replaced_part_with_a_readable_footer_is_caught_by_its_record(root):
    layout = write_round(root)
    # Another valid Parquet file copied over shard 2 (e.g. a stale copy): footer reads fine.
    smaller = os.path.join(root, "other.parquet")
    pq.write_table(comparisons(7, shard=2), smaller)
    shutil.copyfile(smaller, layout.part("m", 0, 2))
    problem = verify_part(layout.root, layout.part("m", 0, 2))
    assert problem is not None and "committed with" in problem
    assert layout.done_shards("m", 0) == {0, 1}


def test_part_without_record_is_judged_by_its_footer(root):
    layout = write_round(root)
    os.unlink(record_path(layout.part("m", 0, 0)))  # a root written before records existed
    assert layout.done_shards("m", 0) == {0, 1, 2}
    os.unlink(record_path(layout.part("m", 0, 1)))
    truncate(layout.part("m", 0, 1))
    assert layout.done_shards("m", 0) == {0, 2}


def test_unreadable_record_counts_as_damage(root):
    layout = write_round(root)
    with open(record_path(layout.part("m", 0, 0)), "w") as f:
        f.write("{not json")
    assert "commit record" in (verify_part(layout.root, layout.part("m", 0, 0)) or "")
    assert layout.done_shards("m", 0) == {1, 2}


# --- the catalog on a damaged part ----------------------------------------------------------------


def test_catalog_names_the_damaged_file_and_its_repair_in_one_line(root):
    layout = write_round(root)
    path = layout.part("m", 0, 1)
    truncate(path)
    for sql in ("SELECT * FROM runs", "SELECT count(*) FROM comparisons"):
        with pytest.raises(CorruptFileError) as info:
            query(root, sql)
        message = str(info.value)
        assert "\n" not in message
        assert path in message and info.value.path == path
        assert "valuescope elicit" in message and "shard 1 of round 0" in message
    with pytest.raises(CorruptFileError):
        connect(root)  # what `fit` opens


def test_cli_sql_prints_one_line_then_works_after_the_repair(root):
    layout = write_round(root)
    path = layout.part("m", 0, 2)
    truncate(path)
    out = subprocess.run(
        [EXE, "sql", "SELECT run_id FROM runs", "--root", root, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert path in lines[0] and "repair:" in lines[0]
    # Recomputing the shard (what the rerun does) repairs the catalog.
    write_table(layout.root, path, "comparisons", comparisons(50, shard=2))
    out = subprocess.run(
        [EXE, "sql", "SELECT count(*) AS n FROM comparisons", "--root", root, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"n": 150}


def test_damaged_fit_file_names_the_fit_command(root):
    layout = write_round(root)
    r = layout.root
    from test_storage import to_table

    util = to_table(
        "utilities",
        {"run_id": "r1", "model": "m", "fit_id": "f1", "outcome_id": ["a", "b"], "mu": [0.0, 1]},
        num_rows=2,
    )
    write_table(r, layout.utilities("m", "f1"), "utilities", util)
    truncate(layout.utilities("m", "f1"))
    with pytest.raises(CorruptFileError, match=r"valuescope fit r1") as info:
        query(root, "SELECT 1")
    # The other repair: set the file aside; the catalog reads again without it.
    moved = set_aside(r, info.value.path)
    assert moved.endswith(".corrupt") and not os.path.exists(record_path(info.value.path))
    assert query(root, "SELECT count(*) AS n FROM utilities").to_pylist() == [{"n": 0}]


# --- the SQL guard and limits ---------------------------------------------------------------------


def test_sql_cannot_read_the_working_directorys_tmp_folder(root, tmp_path, monkeypatch):
    write_round(root, shards=1)
    monkeypatch.chdir(tmp_path)
    os.makedirs(".tmp", exist_ok=True)
    with open(".tmp/secret.csv", "w") as f:
        f.write("secret,42\n")
    for sql in (
        "SELECT * FROM read_csv('.tmp/secret.csv')",
        f"SELECT * FROM read_csv('{tmp_path}/.tmp/secret.csv')",
        "SELECT * FROM glob('.tmp/*')",
    ):
        with pytest.raises(StorageError) as info:
            query(root, sql)
        assert "secret" not in str(info.value).replace("secret.csv", "")
    con = connect(root)
    assert con.execute("SELECT current_setting('temp_directory')").fetchone() == ("",)
    with pytest.raises(duckdb.Error):
        con.execute("SET temp_directory = '.tmp'")


HEAVY = "SELECT count(*) FROM range(100000000000) t WHERE t.range % 7 = 3"


def test_statement_timeout_stops_a_long_query_and_the_connection_stays_usable(root):
    write_round(root, shards=1)
    start = time.perf_counter()
    with pytest.raises(QueryLimitError, match="statement timeout of 0.5 s"):
        query(root, HEAVY, timeout_s=0.5)
    assert time.perf_counter() - start < 10
    con = connect(root)
    with pytest.raises(QueryLimitError):
        run_query(con, HEAVY, root=root, timeout_s=0.3)
    # A fast query under a timeout is not interrupted, now or after the timer would have fired.
    assert run_query(con, "SELECT 1 AS x", root=root, timeout_s=0.2).to_pylist() == [{"x": 1}]
    time.sleep(0.4)
    assert run_query(con, "SELECT 2 AS x", root=root).to_pylist() == [{"x": 2}]
    with pytest.raises(StorageError, match="positive"):
        run_query(con, "SELECT 1", root=root, timeout_s=0)


def test_memory_cap_stops_a_big_query(root):
    write_round(root, shards=1)
    big = "SELECT string_agg(range::VARCHAR, ',') AS s FROM range(30000000)"
    with pytest.raises(QueryLimitError, match=r"more memory than the catalog's cap \(19"):
        query(root, big, memory_limit="20MB")
    assert query(
        root, "SELECT count(*) AS n FROM comparisons", memory_limit="20MB"
    ).to_pylist() == [{"n": 50}]
    with pytest.raises(StorageError, match="not a size"):
        query(root, "SELECT 1", memory_limit="lots")


def test_sql_errors_are_one_line(root):
    write_round(root, shards=1)
    with pytest.raises(StorageError) as info:
        query(root, "SELECT nope FROM comparisons")
    assert "\n" not in str(info.value) and "nope" in str(info.value)
    assert not isinstance(info.value, CorruptFileError)


# --- the same on an object store (moto's S3 server on 127.0.0.1) ----------------------------------


@pytest.fixture
def s3_root(monkeypatch):
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "VALUESCOPE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="vs-integrity")
    yield "s3://vs-integrity/results", client
    server.stop()


def test_damaged_part_on_s3_is_named_and_recomputed(s3_root):
    uri, client = s3_root
    r = Root(uri)
    layout = RunLayout(r, "r1")
    for shard in range(4):
        write_table(r, layout.part("m", 0, shard), "comparisons", comparisons(30, shard=shard))
    write_manifest(layout, new_manifest("r1", {"x": 1}))
    key = layout.part("m", 0, 3).split("/", 1)[1]
    body = client.get_object(Bucket="vs-integrity", Key=key)["Body"].read()
    client.put_object(Bucket="vs-integrity", Key=key, Body=body[: len(body) // 2])
    check = layout.check_shards("m", 0)
    assert check.done == {0, 1, 2} and list(check.damaged) == [3]
    with pytest.raises(CorruptFileError) as info:
        query(uri, "SELECT count(*) FROM comparisons")
    assert info.value.path == f"s3://{layout.part('m', 0, 3)}"
    assert "\n" not in str(info.value) and "shard 3 of round 0" in str(info.value)
    write_table(r, layout.part("m", 0, 3), "comparisons", comparisons(30, shard=3))
    assert layout.done_shards("m", 0) == {0, 1, 2, 3}
    assert query(uri, "SELECT count(*) AS n FROM comparisons").to_pylist() == [{"n": 120}]
