"""Chaos run: replicas killed at random, then the driver, then a rerun; count what was lost.

A ``valuescope elicit`` of the simulated agent over the ``starter`` outcomes (80 outcomes, both
orders of every pair: 6,320 prompts) in small shards runs in a subprocess on a private local
Ray. While it runs, a replica process chosen at random among those scoring a shard is killed
with SIGKILL at random moments (``--replica-kills`` times); then the driver itself is killed with
SIGKILL. The same command is run again and must finish the run. Measured:

- rows lost (prompts with no row) and rows duplicated (extra rows of a prompt), from the
  ``comparisons`` table after the rerun;
- recomputed work: every shard scoring that starts leaves a trace file (fault hook
  ``trace_dir``), so scorings beyond one per shard are work thrown away by the faults;
- the driver's Ray processes still alive after its kill, and how long they took to go;
- the run's status right after the driver kill (should read ``interrupted``).

    .venv/bin/python benchmarks/chaos.py --replica-kills 6 --shard-size 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

BIN = os.path.dirname(sys.executable)
EXE = os.path.join(BIN, "valuescope")
RUN_ID = "chaos"


def _replicas(driver: int) -> list[psutil.Process]:
    """Replica processes of the driver that are scoring a shard right now (Ray titles a worker
    process after the call it runs: ``ray::Replica.run_shard``)."""
    found = []
    try:
        children = psutil.Process(driver).children(recursive=True)
    except psutil.Error:
        return []
    for proc in children:
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if cmd and cmd[0].startswith("ray::Replica.run_shard") and proc.is_running():
            found.append(proc)
    return found


def _parts(root: str) -> int:
    return len(list(Path(root, "comparisons", f"run_id={RUN_ID}").glob("*/*/*.parquet")))


def run_chaos(
    workdir: str,
    *,
    shard_size: int = 100,
    replicas: int = 2,
    replica_kills: int = 5,
    sleep_s: float = 0.3,
    driver_kill_at: float = 0.6,
    seed: int = 0,
    timeout_s: float = 900,
) -> dict[str, Any]:
    """One chaos run in ``workdir``; returns the figures."""
    rng = random.Random(seed)
    root = os.path.join(workdir, "results")
    trace = os.path.join(workdir, "trace")
    os.makedirs(trace, exist_ok=True)
    cmd = [
        EXE, "elicit", "--model", "simulated", "--outcomes", "starter", "--design", "full",
        "--root", root, "--run-id", RUN_ID, "--shard-size", str(shard_size),
        "--replicas", str(replicas), "--progress", "plain",
    ]  # fmt: skip
    env = {**os.environ, "VALUESCOPE_FAULTS": json.dumps({"sleep_s": sleep_s, "trace_dir": trace})}
    env.pop("RAY_ADDRESS", None)
    n_prompts = 80 * 79
    holdout = 158 * 2  # round 0: 5 % of the 3,160 pairs, both orders
    shards = -(-holdout // shard_size) + -(-(n_prompts - holdout) // shard_size)

    t0 = time.perf_counter()
    log1 = open(os.path.join(workdir, "first.log"), "w+")  # noqa: SIM115
    driver = subprocess.Popen(cmd, env=env, stdout=log1, stderr=subprocess.STDOUT)
    kills: list[tuple[float, int]] = []
    deadline = time.time() + timeout_s
    try:
        next_kill = time.time() + rng.uniform(2.0, 4.0)
        while time.time() < deadline and driver.poll() is None:
            done = _parts(root)
            if len(kills) >= replica_kills and done >= driver_kill_at * shards:
                break
            live = _replicas(driver.pid)
            if len(kills) < replica_kills and time.time() >= next_kill and live and done >= 1:
                victim = rng.choice(live)
                try:
                    victim.kill()
                    kills.append((time.perf_counter() - t0, victim.pid))
                except psutil.Error:
                    pass
                next_kill = time.time() + rng.uniform(1.0, 3.0)
            time.sleep(0.1)
        if driver.poll() is not None:
            raise RuntimeError(
                f"the run ended (exit {driver.returncode}) before the driver could be killed; "
                "use a smaller --shard-size or a larger --sleep-s; its output ends: "
                + Path(log1.name).read_text(errors="replace")[-1500:]
            )
        ray_procs = [p for p in psutil.Process(driver.pid).children(recursive=True)]
        driver_killed_at = time.perf_counter() - t0
        parts_at_kill = _parts(root)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        gone_after = None
        left: list[psutil.Process] = ray_procs
        until = time.time() + 30
        while time.time() < until:
            left = [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not left:
                gone_after = time.perf_counter() - t0 - driver_killed_at
                break
            time.sleep(0.1)
        left_names = sorted({p.name() for p in left if p.is_running()})
        for proc in left:  # never leave them behind, whatever the figure says
            with contextlib.suppress(psutil.Error):
                proc.kill()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log1.seek(0)
        first_log = log1.read()
        log1.close()

    from storage.catalog import query

    status_after_kill = query(root, "SELECT status FROM runs").to_pylist()[0]["status"]
    t1 = time.perf_counter()
    rerun = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    rerun_s = time.perf_counter() - t1
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed: {rerun.stderr[-2000:]}")
    row = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    ).to_pylist()[0]
    status_after_rerun = query(root, "SELECT status FROM runs").to_pylist()[0]["status"]
    resumed = re.findall(r"\((\d[\d,]*) shards, (\d[\d,]*) already done\)", rerun.stdout)

    scorings = Counter(re.sub(r"-p\d+-\d+$", "", name) for name in os.listdir(trace))
    sizes = _shard_sizes(n_prompts, holdout, shard_size)
    recomputed_prompts = sum((count - 1) * sizes[key] for key, count in scorings.items())
    return {
        "shards": shards,
        "prompts": n_prompts,
        "replicas": replicas,
        "replica_kills": len(kills),
        "replica_deaths_seen_by_driver": first_log.count("died on shard"),
        "replicas_back": first_log.count("is back (pid"),
        "replica_restarts_failed": first_log.count("did not restart"),
        "driver_killed_at_s": round(driver_killed_at, 1),
        "parts_at_driver_kill": parts_at_kill,
        "ray_processes_at_driver_kill": len(ray_procs),
        "ray_processes_gone_after_s": None if gone_after is None else round(gone_after, 2),
        "ray_processes_left": left_names,
        "status_after_driver_kill": status_after_kill,
        "rerun_s": round(rerun_s, 1),
        "rerun_resumed": [f"{a} shards, {b} already done" for a, b in resumed],
        "status_after_rerun": status_after_rerun,
        "rows": row["n"],
        "rows_lost": n_prompts - row["d"],
        "rows_duplicated": row["n"] - row["d"],
        "scorings_started": sum(scorings.values()),
        "shards_scored_more_than_once": sum(1 for c in scorings.values() if c > 1),
        "recomputed_prompts": recomputed_prompts,
        "recomputed_share": round(recomputed_prompts / n_prompts, 4),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _shard_sizes(n_prompts: int, holdout: int, shard_size: int) -> dict[str, int]:
    """Prompts per shard, keyed like the trace files (``r<round>-s<shard>``)."""
    sizes = {}
    for round_, total in ((0, holdout), (1, n_prompts - holdout)):
        for shard, start in enumerate(range(0, total, shard_size)):
            sizes[f"r{round_}-s{shard}"] = min(shard_size, total - start)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--replica-kills", type=int, default=5)
    ap.add_argument("--sleep-s", type=float, default=0.3, help="extra seconds per shard")
    ap.add_argument("--driver-kill-at", type=float, default=0.6, help="share of shards done")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="vs-chaos-")
    try:
        figures = run_chaos(
            workdir,
            shard_size=args.shard_size,
            replicas=args.replicas,
            replica_kills=args.replica_kills,
            sleep_s=args.sleep_s,
            driver_kill_at=args.driver_kill_at,
            seed=args.seed,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
