"""Results on an S3 object store (moto's server on 127.0.0.1): runs, SQL, resume, failures.

moto keeps its buckets in process-wide memory, so a second server on another port sees the same
buckets: stopping one mid-run is an outage, starting another is the store coming back.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from moto.server import ThreadedMotoServer  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

import polars as pl  # noqa: E402

import storage  # noqa: E402
from cluster.pipeline.run import run  # noqa: E402
from cluster.spec import RunSpec  # noqa: E402
from storage import Root  # noqa: E402
from storage.catalog import query  # noqa: E402
from storage.errors import RootUnreachableError  # noqa: E402

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
BUCKET = "vs-results"
N_PROMPTS = 80 * 79


def start_server() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "VALUESCOPE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def moto():
    server, endpoint = start_server()
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


@pytest.fixture
def s3(moto, monkeypatch):
    """moto's S3 in this process's environment. Credentials never travel to replicas through
    Ray (its runtime_env is logged): a private local Ray's workers inherit the environment Ray
    was started in, so a Ray started before the variables were set is restarted here."""
    import ray

    from cluster.execution.ray_runtime import init_ray

    endpoint, client = moto
    for key, value in s3_env(endpoint).items():
        monkeypatch.setenv(key, value)
    if ray.is_initialized():
        ray.shutdown()
        init_ray(None, num_cpus=2)
    return endpoint, client


def spec(root: str, **execution) -> RunSpec:
    return RunSpec.model_validate(
        {
            "run_id": "s3run",
            "root": root,
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "seed": 5}],
            "design": {"kind": "full"},
            "fit": {"bootstrap": 0},
            "execution": {"shard_size": 500, "progress": "none", **execution},
        }
    )


def parts(client, prefix: str) -> dict[str, str]:
    """Part objects under a prefix → their ETag."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {
        o["Key"]: o["ETag"]
        for page in pages
        for o in page.get("Contents", [])
        if "/part-" in o["Key"] and o["Key"].endswith(".parquet")  # not the commit records
    }


def test_run_on_s3_sql_and_resume_from_the_bucket(s3, ray_local):
    _, client = s3
    root = f"s3://{BUCKET}/a"
    run(spec(root))
    counts = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    ).to_pylist()
    assert counts == [{"n": N_PROMPTS, "d": N_PROMPTS}]
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "done"}]
    assert query(root, "SELECT count(*) AS n FROM utilities").to_pylist() == [{"n": 80}]
    # polars reads the bucket too, through the same endpoint override
    frame = storage.scan(root, "comparisons").select(pl.len(), pl.col("p_a").mean()).collect()
    sql_mean = query(root, "SELECT avg(p_a) AS m FROM comparisons").to_pylist()[0]["m"]
    assert frame.item(0, 0) == N_PROMPTS
    assert frame.item(0, 1) == pytest.approx(sql_mean)
    before = parts(client, "a/comparisons/")
    assert len(before) == 1 + 13  # held-out round: 1 shard; the rest: 13 shards of 500
    # Lose three shards, as a run killed part-way would have; the rerun asks only those.
    lost = sorted(before)[4:7]
    for key in lost:
        client.delete_object(Bucket=BUCKET, Key=key)
    rounds = run(spec(root))[0].rounds
    assert sum(r.shards_scored for r in rounds) == 3
    assert sum(r.rows_written for r in rounds) == 3 * 500
    after = parts(client, "a/comparisons/")
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in before if k not in lost)  # untouched
    assert query(root, "SELECT count(*) AS n FROM comparisons").to_pylist() == [{"n": N_PROMPTS}]


def test_unreachable_endpoint_fails_before_any_work(tmp_path):
    env = {**os.environ, **s3_env(f"http://127.0.0.1:{closed_port()}")}
    start = time.perf_counter()
    proc = subprocess.run(
        [EXE, "run", "--model", "simulated", "--design", "full", "--root", f"s3://{BUCKET}/x"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.perf_counter() - start < 60
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("valuescope: error: results root"), lines  # one line
    assert "cannot connect to the S3 endpoint http://127.0.0.1:" in lines[-1]
    assert "Ray" not in proc.stderr and "Traceback" not in proc.stderr  # no engine was started


def test_missing_bucket_is_a_clear_error(s3, ray_local):
    with pytest.raises(RootUnreachableError, match="bucket does not exist"):
        run(spec("s3://no-such-bucket/runs"))
    with pytest.raises(RootUnreachableError, match="the bucket 'no-such-bucket' does not exist"):
        query("s3://no-such-bucket/runs", "SELECT count(*) FROM comparisons")


def test_outage_mid_run_leaves_nothing_that_breaks_the_next_attempt(s3, ray_local, monkeypatch):
    _, client = s3
    root = f"s3://{BUCKET}/outage"
    server, endpoint = start_server()  # same buckets, its own port: we can take it down
    monkeypatch.setenv("VALUESCOPE_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("VALUESCOPE_FAULTS", '{"sleep_s": 0.4}')
    outage = threading.Event()

    def pull_the_plug() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and len(parts(client, "outage/comparisons/")) < 3:
            time.sleep(0.1)
        server.stop()
        outage.set()

    threading.Thread(target=pull_the_plug, daemon=True).start()
    with pytest.raises(RootUnreachableError, match="cannot connect to the S3 endpoint"):
        run(spec(root))
    assert outage.is_set()
    written = parts(client, "outage/comparisons/")
    assert 3 <= len(written) < 14
    # A write that failed left no object, not even a half one.
    root_obj = Root(root)
    with pytest.raises(RootUnreachableError):
        root_obj.write_atomic(root_obj.path("probe.bin"), b"x" * 1_000_000)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="outage/")["Contents"]]
    assert not any(k.endswith("probe.bin") or ".tmp-" in k for k in keys)
    # The store comes back (on another address): the rerun completes, every prompt once.
    server2, endpoint2 = start_server()
    try:
        monkeypatch.setenv("VALUESCOPE_S3_ENDPOINT", endpoint2)
        monkeypatch.delenv("VALUESCOPE_FAULTS")
        rounds = run(spec(root))[0].rounds
        assert sum(r.shards_scored for r in rounds) == 14 - len(written)  # only what was missing
        rows = query(
            root,
            "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons",
        ).to_pylist()
        assert rows == [{"n": N_PROMPTS, "d": N_PROMPTS}]
    finally:
        server2.stop()
