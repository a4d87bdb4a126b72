"""Which Ray a run uses, and a run that loses a node, on real local Ray clusters.

Clusters are started with ``ray start --block`` in sessions of their own, in a temp folder of
their own (``RAY_TMPDIR``, so the cluster they register is seen only by these tests), and are
stopped by killing their process groups and descendants in a ``finally``: ``ray stop`` would
stop every Ray of this user on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from storage.catalog import query

BIN = os.path.dirname(sys.executable)
EXE = os.path.join(BIN, "valuescope")
N_PROMPTS = 80 * 79


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill a `ray start --block` node: its process group, then anything that left it."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait(timeout=30)


class Cluster:
    """A head (and optional worker nodes) on 127.0.0.1 with a temp folder of their own."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="vsc-", dir="/tmp")  # short: Ray's sockets live here
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_TMPDIR": self.tmp,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # a second node on this machine
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "HF_HUB_OFFLINE": "1",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []
        self.gcs = 0

    def start(self, *, head: bool, num_cpus: int, resources: dict[str, float]) -> subprocess.Popen:
        agent_http, agent_grpc, runtime_env, metrics, node_mgr, obj_mgr = free_ports(6)
        cmd = [
            os.path.join(BIN, "ray"), "start", "--block", "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
            f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
            "--disable-usage-stats",
        ]  # fmt: skip
        if head:
            self.gcs, client = free_ports(2)
            cmd += [
                "--head", f"--port={self.gcs}", "--include-dashboard=false",
                f"--ray-client-server-port={client}",
            ]  # fmt: skip
        else:
            cmd += [f"--address=127.0.0.1:{self.gcs}"]
        log = open(os.path.join(self.tmp, f"node{len(self.nodes)}.log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.nodes.append(proc)
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"`ray start` failed here: {self.log(len(self.nodes) - 1)[-800:]}")
            registered = not head or Path(self.tmp, "ray", "ray_current_cluster").exists()
            if registered and any(p.name() == "raylet" for p in _children(proc.pid)):
                break
            time.sleep(0.5)
        return proc

    def log(self, i: int) -> str:
        return Path(self.tmp, f"node{i}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            kill_tree(proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()


def elicit_cmd(root: str, *extra: str) -> list[str]:
    return [
        EXE, "elicit", "--model", "simulated", "--outcomes", "starter", "--design", "full",
        "--root", root, "--progress", "plain", *extra,
    ]  # fmt: skip


def exactly_once(root: str) -> tuple[int, int]:
    rows = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    )
    row = rows.to_pylist()[0]
    return row["n"], row["d"]


def test_address_where_nothing_answers_fails_in_seconds(tmp_path):
    (port,) = free_ports(1)
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    start = time.perf_counter()
    proc = subprocess.run(
        elicit_cmd(str(tmp_path / "r")), env=env, capture_output=True, text=True, timeout=100
    )
    took = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"$RAY_ADDRESS '127.0.0.1:{port}': nothing answers" in lines[0]
    assert took < 30, took  # was: Ray's own 120 s wait

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"outcomes: [starter]\nroot: {tmp_path / 'r2'}\nmodels: [{{name: simulated}}]\n"
        f"execution: {{ray_address: '127.0.0.1:{port}', progress: none}}\n"
    )
    env.pop("RAY_ADDRESS")
    proc = subprocess.run(
        [EXE, "elicit", str(spec)], env=env, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 1 and "execution.ray_address '127.0.0.1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_address_that_accepts_but_never_answers_fails_in_seconds(tmp_path):
    # A port that accepts connections and says nothing (a hung process, a wrong service):
    # Ray's own connect would wait for minutes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        start = time.perf_counter()
        proc = subprocess.run(
            elicit_cmd(str(tmp_path / "r")), env=env, capture_output=True, text=True, timeout=100
        )
        took = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer as a Ray cluster" in lines[0], proc.stderr
    assert took < 30, took


def test_plain_run_ignores_a_cluster_registered_with_ray_start(tmp_path):
    # A registered cluster with no CPUs at all: a run that joined it could never place a
    # replica. A plain run must start its private Ray instead and finish.
    with cluster() as c:
        c.start(head=True, num_cpus=0, resources={})
        # registered where a plain ray.init() looks ($RAY_TMPDIR/ray), as `ray start` does
        assert (Path(c.tmp) / "ray" / "ray_current_cluster").exists()
        root = str(tmp_path / "r")
        proc = subprocess.run(
            elicit_cmd(root, "--shard-size", "5000"),
            env=c.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert exactly_once(root) == (N_PROMPTS, N_PROMPTS)


@pytest.mark.slow
def test_run_survives_losing_a_worker_node(tmp_path):
    """Two nodes (head + worker, one replica each); the worker node is killed mid-run."""
    with cluster() as c:
        c.start(head=True, num_cpus=1, resources={"head_node": 1})
        worker = c.start(head=False, num_cpus=1, resources={"worker_node": 1})
        root = str(tmp_path / "r")
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            f"name: two\noutcomes: [starter]\nroot: {root}\n"
            "models: [{name: simulated, replicas: 2}]\ndesign: {kind: full}\n"
            f"execution: {{ray_address: '127.0.0.1:{c.gcs}', shard_size: 200, "
            "progress: plain}\n"
        )
        env = {**c.env, "VALUESCOPE_FAULTS": json.dumps({"sleep_s": 0.4})}
        driver = subprocess.Popen(
            [EXE, "elicit", str(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            # Both replicas at work: a replica process on each node.
            def replicas_on(node: subprocess.Popen) -> list[psutil.Process]:
                found = []
                for p in _children(node.pid):
                    with contextlib.suppress(psutil.Error):
                        if p.cmdline() and p.cmdline()[0].startswith("ray::Replica"):
                            found.append(p)
                return found

            deadline = time.time() + 180
            while time.time() < deadline and driver.poll() is None:
                parts = list(Path(root).glob("comparisons/*/*/round=0001/*.parquet"))
                if len(parts) >= 4 and replicas_on(worker) and replicas_on(c.nodes[0]):
                    break
                time.sleep(0.3)
            assert driver.poll() is None, driver.stdout.read() if driver.stdout else ""
            kill_tree(worker)  # the whole worker node: raylet, agents, its replica
            out, _ = driver.communicate(timeout=400)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
        assert driver.returncode == 0, out[-3000:]
        assert "died on shard" in out, out[-3000:]
        assert exactly_once(root) == (N_PROMPTS, N_PROMPTS)
