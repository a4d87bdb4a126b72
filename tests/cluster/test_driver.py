"""The elicitation pipeline on a real local Ray, with the simulated scorer and real faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.special import ndtr

from cluster.errors import RunFailed
from cluster.pipeline.run import elicit
from cluster.spec import RunSpec
from storage.catalog import query

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


def make_spec(root: str, **kw) -> RunSpec:
    data = {
        "name": "t",
        "root": root,
        "outcomes": ["starter"],
        "models": [{"name": "simulated", "seed": 3, "noise": 0.5, "position_bias": 0.3}],
        "design": {"kind": "full"},
        "execution": {"shard_size": 500, "progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)


def exactly_once(root: str) -> tuple[int, int]:
    rows = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    )
    row = rows.to_pylist()[0]
    return row["n"], row["d"]


def test_full_graph_every_prompt_once_with_true_probabilities(root, ray_local):
    spec = make_spec(root)
    results = elicit(spec)
    n_pairs = 80 * 79 // 2
    # Round 0 holds the 158 held-out pairs, round 1 every other pair.
    assert [r.round for r in results] == [0, 1]
    assert [r.rows_written for r in results] == [2 * 158, 2 * (n_pairs - 158)]
    assert [r.shards_total for r in results] == [1, 13]
    assert exactly_once(root) == (2 * n_pairs, 2 * n_pairs)
    table = query(
        root,
        """
        SELECT c.p_a, ua.true_utility AS ua, ub.true_utility AS ub
        FROM comparisons c
        JOIN outcomes ua ON ua.outcome_id = c.outcome_a
        JOIN outcomes ub ON ub.outcome_id = c.outcome_b""",
    )
    d = table.to_pydict()
    expected = ndtr((np.array(d["ua"]) - np.array(d["ub"]) + 0.3) / np.sqrt(2 * 0.5**2))
    np.testing.assert_allclose(d["p_a"], expected, rtol=1e-12)
    runs = query(root, "SELECT status, simulated FROM runs").to_pylist()
    assert runs == [{"status": "done", "simulated": True}]


def test_auto_shard_size_gives_each_replica_several_shards():
    from cluster.pipeline.context import auto_shard_size

    assert auto_shard_size(1000, 1) == 250  # the quickstart's second round: 4 shards, not 1
    assert auto_shard_size(1000, 8) == 64  # 16 shards: two for each of 8 replicas
    assert auto_shard_size(100, 2) == 64
    assert auto_shard_size(1_000_000, 4) == 2048


def test_a_small_round_keeps_every_replica_busy(root, ray_local, tmp_path, monkeypatch):
    """With no shard size given, a round of 1,560 prompts on two replicas is cut into 8 shards
    and both replicas score (one shard of the old default 2,048 left one replica idle and the
    progress bar at 0 until the round ended)."""
    outcomes = tmp_path / "forty.yaml"
    outcomes.write_text(
        "".join(f"- {{id: o{k:02d}, text: Outcome {k} happens.}}\n" for k in range(40))
    )
    trace = tmp_path / "trace"
    trace.mkdir()
    monkeypatch.setenv("VALUESCOPE_FAULTS", json.dumps({"trace_dir": str(trace)}))
    spec = make_spec(
        root,
        outcomes=[str(outcomes)],
        models=[{"name": "simulated", "seed": 3, "replicas": 2}],
        design={"kind": "full", "holdout": {"size": 0}},
        execution={"progress": "none", "num_cpus_per_replica": 0.5},
    )
    [result] = elicit(spec)
    assert (result.prompts, result.shards_total) == (40 * 39, 8)
    pids = {name.split("-")[2] for name in os.listdir(trace)}
    assert len(os.listdir(trace)) == 8 and len(pids) == 2, sorted(os.listdir(trace))
    assert exactly_once(root) == (40 * 39, 40 * 39)


def test_rerun_skips_finished_shards(root, ray_local):
    spec = make_spec(root)
    elicit(spec)
    assert elicit(spec) == []  # nothing left to ask: no round runs, no engine starts
    assert exactly_once(root)[0] == 80 * 79


@pytest.mark.parametrize("new_size", [300, 1000])
def test_a_rerun_with_another_shard_size_resumes_the_same_shards(root, ray_local, new_size):
    """A round is cut once: its shard size is kept in the manifest, so a rerun with another
    ``--shard-size`` (smaller: old parts would be asked again; larger: prompts would be skipped)
    finishes the shards the round started with."""
    elicit(make_spec(root))
    parts = os.path.join(root, "comparisons", f"run_id={make_spec(root).resolved_run_id()}")
    parts = os.path.join(parts, "model=simulated", "round=0001")
    removed = 0
    for name in os.listdir(parts):  # as if the run had been stopped after its first 3 shards
        if name.startswith("part-") and int(name.split("-")[1].split(".")[0]) >= 3:
            os.remove(os.path.join(parts, name))
            removed += name.endswith(".parquet")
    assert removed >= 5
    rerun = make_spec(root, execution={"shard_size": new_size, "progress": "none"})
    [result] = [r for r in elicit(rerun) if r.round == 1]
    assert exactly_once(root) == (80 * 79, 80 * 79)
    assert result.shards_skipped == 3 and result.shards_total == 3 + removed
    with open(os.path.join(root, "runs", rerun.resolved_run_id(), "manifest.json")) as f:
        manifest = json.load(f)
    assert {r["shard_size"] for r in manifest["rounds"]} == {500}


def test_replica_killed_mid_shard_loses_and_duplicates_nothing(
    root, ray_local, tmp_path, monkeypatch
):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(
        "VALUESCOPE_FAULTS", json.dumps({"die_on_shard": [2, 7], "marker_dir": str(markers)})
    )
    results = elicit(make_spec(root))
    assert sorted(os.listdir(markers)) == ["died-2", "died-7"]  # the process really died, twice
    assert sum(r.retries for r in results) >= 2
    assert exactly_once(root) == (80 * 79, 80 * 79)


def test_engine_that_cannot_start_is_a_clear_error(root, ray_local, monkeypatch):
    monkeypatch.setenv("VALUESCOPE_FAULTS", json.dumps({"fail_init": True}))
    start = time.perf_counter()
    with pytest.raises(RunFailed, match="engine could not start: .*failed to start"):
        elicit(make_spec(root))
    assert time.perf_counter() - start < 120


def test_engine_that_dies_for_good_stops_the_run(root, ray_local, monkeypatch):
    monkeypatch.setenv("VALUESCOPE_FAULTS", json.dumps({"die_always": True}))
    spec = make_spec(
        root, execution={"shard_size": 500, "progress": "none", "max_shard_retries": 2}
    )
    with pytest.raises(RunFailed, match="failed 3 times|every replica died"):
        elicit(spec)
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "failed"}]


def test_error_budget_stops_the_run(root, ray_local, monkeypatch):
    monkeypatch.setenv("VALUESCOPE_FAULTS", json.dumps({"error_rate": 0.5}))
    spec = make_spec(root, models=[{"name": "simulated", "error_budget": 0.1}])
    with pytest.raises(RunFailed, match="over the error budget"):
        elicit(spec)


def test_bad_outcome_set_fails_before_any_engine(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {id: a, text: One.}\n- {id: a, text: Two.}\n")
    proc = subprocess.run(
        [
            EXE,
            "elicit",
            "--model",
            "simulated",
            "--outcomes",
            str(bad),
            "--root",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "duplicate id 'a' (lines 1 and 2)" in proc.stderr
    assert "Ray" not in proc.stderr and not (tmp_path / "r").exists()


def test_driver_killed_and_rerun_resumes_without_recomputing(tmp_path):
    root = str(tmp_path / "r")
    faults = json.dumps({"sleep_s": 0.3})
    cmd = [
        EXE,
        "elicit",
        "--model",
        "simulated",
        "--outcomes",
        "starter",
        "--design",
        "full",
        "--root",
        root,
        "--shard-size",
        "200",
        "--progress",
        "plain",
        "--run-id",
        "kill",
    ]
    env = {**os.environ, "VALUESCOPE_FAULTS": faults}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    parts = os.path.join(root, "comparisons", "run_id=kill", "model=simulated", "round=0001")
    deadline = time.time() + 120

    def stored() -> int:  # part files only (each has a .commit record next to it)
        return len([f for f in os.listdir(parts) if f.endswith(".parquet")])

    while time.time() < deadline and (not os.path.isdir(parts) or stored() < 5):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    # Replicas may finish the shard in their hands as they go down; wait until nothing moves.
    done_before, stable_since = -1, time.time()
    total = 31  # 6004 prompts of round 1 in shards of 200 (round 0's 316 prompts: 2 shards)
    while time.time() - stable_since < 3:
        count = stored()
        if count != done_before:
            done_before, stable_since = count, time.time()
        time.sleep(0.2)
    assert 5 <= done_before < total
    rerun = subprocess.run(
        cmd[:-2] + ["--run-id", "kill"], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"({total - done_before} shards, {done_before} already done)" in rerun.stdout
    assert "round 0" not in rerun.stdout  # the held-out round was complete: not asked again
    assert exactly_once(root) == (80 * 79, 80 * 79)
