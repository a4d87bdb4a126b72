"""One run, one writer: a second command on a run is refused; a killed driver leaves nothing
running and its run reads as interrupted; the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from storage import Root, RunLayout
from storage.catalog import query
from storage.manifest import new_manifest, read_manifest, write_manifest
from storage.runlock import RunLock, RunLockedError, lock_path

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


def plant_lock(layout: RunLayout, pid: int, host: str, heartbeat: float) -> None:
    started = psutil.Process(pid).create_time() if host == socket.gethostname() else 0.0
    record = {
        "pid": pid,
        "pid_started": started,
        "host": host,
        "started": heartbeat,
        "heartbeat": heartbeat,
        "token": "planted",
    }
    layout.root.write_atomic(lock_path(layout), json.dumps(record).encode())


def test_live_holder_refuses_and_dead_or_silent_holder_is_taken_over(root):
    layout = RunLayout(Root(root), "r1")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        plant_lock(layout, sleeper.pid, socket.gethostname(), time.time())
        with pytest.raises(RunLockedError) as err:
            RunLock(layout).acquire()
        message = str(err.value)
        assert "\n" not in message and f"pid {sleeper.pid} on host" in message
        assert "'r1'" in message
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = RunLock(layout)
    lock.acquire()  # its holder is dead: stale, taken over
    assert json.loads(Path(lock_path(layout)).read_text())["pid"] == os.getpid()
    lock.release()
    assert not Path(lock_path(layout)).exists()

    plant_lock(layout, 1, "another-host", time.time())  # heartbeat fresh: alive
    with pytest.raises(RunLockedError, match="another-host"):
        RunLock(layout).acquire()
    plant_lock(layout, 1, "another-host", time.time() - 120)  # silent for 2 min: gone
    with RunLock(layout):
        assert json.loads(Path(lock_path(layout)).read_text())["host"] == socket.gethostname()


def test_running_manifest_without_live_writer_reads_as_interrupted(root):
    layout = RunLayout(Root(root), "r2")
    manifest = new_manifest("r2", {"x": 1})
    manifest.status = "running"
    with RunLock(layout):
        write_manifest(layout, manifest)
        assert read_manifest(layout).status == "running"
        assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "running"}]
    sleeper = subprocess.Popen(["sleep", "60"])
    plant_lock(layout, sleeper.pid, socket.gethostname(), time.time())
    sleeper.kill()
    sleeper.wait()
    assert read_manifest(layout).status == "interrupted"
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "interrupted"}]


def test_second_command_refused_killed_driver_reaped_rerun_resumes(tmp_path):
    root = str(tmp_path / "r")
    cmd = [
        EXE, "elicit", "--model", "simulated", "--outcomes", "starter", "--design", "full",
        "--root", root, "--shard-size", "200", "--progress", "plain", "--run-id", "once",
    ]  # fmt: skip
    env = {**os.environ, "VALUESCOPE_FAULTS": json.dumps({"sleep_s": 0.3})}
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = Path(root, "comparisons", "run_id=once", "model=simulated", "round=0001")
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 3:
            assert first.poll() is None, "the first command ended early"
            time.sleep(0.2)
        start = time.perf_counter()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert time.perf_counter() - start < 30
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "run 'once'" in lines[0] and f"pid {first.pid} on host" in lines[0]
        assert "being written by another command" in lines[0]

        ray_procs = psutil.Process(first.pid).children(recursive=True)
        assert any(p.name() == "raylet" for p in ray_procs)
        os.kill(first.pid, signal.SIGKILL)  # the driver alone, not its process group
        first.wait()
        deadline = time.time() + 10
        while time.time() < deadline:
            left = [p for p in ray_procs if p.is_running() and p.status() != "zombie"]
            if not left:
                break
            time.sleep(0.2)
        assert not left, [(p.pid, p.name()) for p in left]  # gone within seconds
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "interrupted"}]
    rerun = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    ).to_pylist()
    assert rows == [{"n": 80 * 79, "d": 80 * 79}]
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "done"}]
