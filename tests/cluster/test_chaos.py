"""A reduced ``benchmarks/chaos.py``: replicas killed at random, then the driver, then a rerun."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _chaos():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
    spec = importlib.util.spec_from_file_location("chaos_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_random_replica_kills_then_driver_kill_lose_and_duplicate_nothing(tmp_path):
    replicas, kills = 2, 2
    figures = _chaos().run_chaos(
        str(tmp_path),
        shard_size=200,
        replicas=replicas,
        replica_kills=kills,
        sleep_s=0.3,
        driver_kill_at=0.5,
        seed=3,
    )
    assert figures["replica_kills"] == kills
    assert figures["rows"] == 80 * 79
    assert figures["rows_lost"] == 0 and figures["rows_duplicated"] == 0
    assert figures["status_after_driver_kill"] == "interrupted"
    assert figures["status_after_rerun"] == "done"
    assert figures["ray_processes_left"] == []
    assert figures["ray_processes_gone_after_s"] is not None
    assert figures["ray_processes_gone_after_s"] < 5
    # Work thrown away: at most the shard each killed replica was executing, and the shard each
    # replica was executing when the driver died; stored shards are never scored again.
    extra = figures["scorings_started"] - figures["shards"]
    assert 0 <= extra <= kills + replicas, figures
    assert figures["rerun_resumed"], figures  # the rerun said how many shards were already done
