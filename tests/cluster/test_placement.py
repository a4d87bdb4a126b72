"""Multi-GPU placement: bundles, STRICT_PACK groups, `replicas: auto`, and pools that don't fit.

The Ray-level test runs in a subprocess on its own local Ray that declares 4 (fake) GPUs, so it
neither needs a GPU nor disturbs the session's CPU-only Ray; the simulated scorer stands in
for the engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cluster.execution.placement import (
    Node,
    PlacementError,
    bundles,
    check_fits,
    replicas_that_fit,
)


def test_replicas_fit_per_node_not_in_total():
    two_nodes = [{"GPU": 3.0, "CPU": 8.0}, {"GPU": 3.0, "CPU": 8.0}]
    # 6 GPUs in total, but a 2-GPU replica cannot straddle nodes: 1 per node.
    assert replicas_that_fit(two_nodes, 2, 1) == 2
    assert replicas_that_fit(two_nodes, 1, 1) == 6
    assert replicas_that_fit(two_nodes, 0.5, 1) == 12
    assert replicas_that_fit([{"GPU": 4.0, "CPU": 3.0}], 1, 2) == 1  # CPU-bound
    assert replicas_that_fit([{"CPU": 2.0}], 0, 1) == 2  # CPU-only replicas
    assert replicas_that_fit([{"CPU": 2.0}], 1, 1) == 0


def test_bundles_one_gpu_each_cpus_spread():
    assert bundles(2, 1.0) == [{"GPU": 1.0, "CPU": 0.5}, {"GPU": 1.0, "CPU": 0.5}]
    assert len(bundles(8, 8.0)) == 8
    with pytest.raises(PlacementError, match="whole number of GPUs"):
        bundles(1.5, 1.0)


def test_pool_that_can_never_fit_is_refused_with_the_numbers():
    nodes = [Node("n1", {"GPU": 4.0, "CPU": 16.0}, {"GPU": 4.0, "CPU": 16.0})]
    check_fits("m", nodes, replicas=2, gpus_per_replica=2, cpus_per_replica=1)
    with pytest.raises(PlacementError) as info:
        check_fits("m", nodes, replicas=3, gpus_per_replica=2, cpus_per_replica=1)
    message = str(info.value)
    assert "3 replica(s) asked" in message and "at most 2 fit" in message
    assert "4 GPUs" in message and "replicas: auto" in message


SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(num_cpus=4, num_gpus=4, _node_ip_address="127.0.0.1", include_dashboard=False,
             logging_level="ERROR")
    from cluster.pipeline.context import auto_replicas, open_pool, prepare
    from cluster.pipeline.run import elicit
    from cluster.execution.driver import ReplicaPool
    from cluster.execution.placement import PlacementError, group_bundle_nodes
    from cluster.spec import RunSpec

    root = sys.argv[1]
    out = {}

    def spec(replicas, run_id):
        return RunSpec.model_validate({
            "run_id": run_id, "root": root, "outcomes": ["starter"],
            "models": [{"name": "simulated", "gpus_per_replica": 2, "replicas": replicas}],
            "design": {"kind": "full"}, "fit": {"bootstrap": 0},
            "execution": {"shard_size": 500, "progress": "none"},
        })

    s = spec("auto", "auto")
    out["auto"] = auto_replicas(s.models[0])
    ctx = prepare(s)
    pool = open_pool(ctx, s.models[0])
    out["groups"] = len(pool.placement_groups)
    out["bundle_nodes"] = group_bundle_nodes(pool.placement_groups)

    @ray.remote(num_gpus=1, num_cpus=0)
    def gpu_ids():
        return [str(g) for g in ray.get_gpu_ids()]

    out["gpus"] = [
        ray.get([gpu_ids.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=i)).remote() for i in range(2)])
        for pg in pool.placement_groups
    ]
    out["free_gpus_while_held"] = ray.available_resources().get("GPU", 0.0)
    pool.shutdown()

    # Data parallel across the two tensor-parallel-shaped replicas: every prompt once.
    results = elicit(spec(2, "dp"))
    out["rows"] = sum(r.rows_written for r in results)
    out["pids"] = len(set().union(*(r.replica_pids for r in results)))

    try:
        elicit(spec(3, "three"))
    except PlacementError as exc:
        out["three"] = str(exc)

    # On a cluster that may grow the driver waits, then says what is missing.
    start = time.perf_counter()
    try:
        ReplicaPool(prepare(spec(3, "wait")).setup_for(spec(3, "wait").models[0]), replicas=3,
                    num_cpus=1, gpus_per_replica=2, placement_timeout_s=3)
    except PlacementError as exc:
        out["timeout"] = str(exc)
    out["timeout_s"] = time.perf_counter() - start
    time.sleep(0.5)
    out["free_gpus_after"] = ray.available_resources().get("GPU", 0.0)
    print("RESULT " + json.dumps(out))
    """
)


def test_two_replicas_of_two_gpus_on_fake_gpu_cluster(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT ") :])
    assert out["auto"] == 2  # 4 GPUs, 2 per replica
    assert out["groups"] == 2
    # STRICT_PACK: each replica's two bundles on one node
    assert all(len(set(nodes)) == 1 for nodes in out["bundle_nodes"])
    # distinct bundles: four different GPUs, two per replica
    flat = [g for group in out["gpus"] for ids in group for g in ids]
    assert sorted(flat) == ["0", "1", "2", "3"]
    assert out["free_gpus_while_held"] == 0.0
    assert out["rows"] == 80 * 79 and out["pids"] == 2
    assert "3 replica(s) asked" in out["three"] and "at most 2 fit" in out["three"]
    assert "only 2 of 3 replicas could be placed within 3 s" in out["timeout"]
    assert "STRICT_PACK" in out["timeout"] and out["timeout_s"] < 30
    assert out["free_gpus_after"] == 4.0  # the groups of a failed pool are released
