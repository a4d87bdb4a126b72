"""Watchdog for a private local Ray: ``python -m cluster.execution.reaper DRIVER_PID SESSION_DIR``.

Started by :func:`cluster.execution.ray_runtime.init_ray` in a session of its own. While the
driver lives it notes, every :data:`POLL_S`, the driver's Ray processes (descendants whose
command line names the Ray session folder or carries a ``ray::`` title). Once the driver is
gone, however it died (``kill -9`` included), it kills those that are still alive and exits.

Why it is needed: Ray ties its GCS and raylet to the driver (the kernel's parent-death
signal), but the raylet's agents notice a dead raylet only after a few checks and then try to
report to the dead GCS for a minute or more. Each process is recorded with its start time,
so a pid the system reused for something else is never touched.
"""

from __future__ import annotations

import sys
import time

import psutil

POLL_S = 0.5


def _is_ray(proc: psutil.Process, session_dir: str) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return session_dir in cmd or cmd.startswith("ray::")


def watch(driver_pid: int, session_dir: str) -> int:
    """Watch until the driver is gone, then kill its leftover Ray processes; returns how many."""
    me = psutil.Process()
    try:
        driver = psutil.Process(driver_pid)
        born = driver.create_time()
    except psutil.Error:
        return 0
    known: dict[int, float] = {}  # pid -> create time
    while True:
        try:
            alive = driver.is_running() and driver.create_time() == born
            if alive and driver.status() == psutil.STATUS_ZOMBIE:
                alive = False
            children = driver.children(recursive=True) if alive else []
        except psutil.Error:
            alive, children = False, []
        for child in children:
            if child.pid != me.pid and child.pid not in known and _is_ray(child, session_dir):
                try:
                    known[child.pid] = child.create_time()
                except psutil.Error:
                    continue
        if not alive:
            break
        known = {pid: t for pid, t in known.items() if psutil.pid_exists(pid)}
        time.sleep(POLL_S)
    killed = 0
    for pid, created in known.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
