"""One run, one writer: the lock a command holds while it writes a run.

``runs/<run_id>/writer.lock`` holds one line of JSON: the writer's pid, the start time of that
process, its host, when it took the lock and its latest *heartbeat* (refreshed every
:data:`HEARTBEAT_S` by a thread). A second command on the same run is **refused** with a
one-line error naming the holder: a wait would hide a stuck run behind a silent terminal, and
sharing shards would need per-shard leases, while two drivers of an active design would still
each fit and acquire their own next round; refusing is the one choice that can never compute
twice, and resuming afterwards costs nothing (finished shards are skipped).

A lock is *stale*, and taken over, when its holder is gone: on the same host, its pid no longer
runs (or now names a process started at another time); from another host, its heartbeat is
older than :data:`STALE_S`. A manifest left ``running`` by a holder that is gone is shown as
``interrupted`` (:func:`writer_alive`, used by :mod:`storage.manifest`).

Local roots take the lock with an exclusive create (``O_EXCL``), so two commands started in
the same instant cannot both win. An ``s3://`` root has no such primitive in the filesystem
layer used here: the lock is written, then read back after :data:`S3_SETTLE_S` to check that
this command's claim survived; two commands started within that window can still both run.
They write identical, atomically replaced part files (no row is duplicated), but compute twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from storage.errors import StorageError
from storage.layout import RunLayout

HEARTBEAT_S = 10.0
STALE_S = 60.0
S3_SETTLE_S = 1.0
LOCK_NAME = "writer.lock"


class RunLockedError(StorageError):
    """Another live command is writing this run."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock."""

    pid: int
    pid_started: float
    host: str
    started: float
    heartbeat: float
    token: str

    def alive(self, now: float | None = None) -> bool:
        """Is the holder still running? (pid on this host; heartbeat from another host)."""
        if self.host == socket.gethostname():
            return _pid_started(self.pid) == self.pid_started
        return (now if now is not None else time.time()) - self.heartbeat < STALE_S

    def describe(self, now: float | None = None) -> str:
        now = now if now is not None else time.time()
        return (
            f"pid {self.pid} on host {self.host!r} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.started))} "
            f"(heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"
        )


def _pid_started(pid: int) -> float | None:
    """Start time of a running process, or None when no such process runs."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def lock_path(layout: RunLayout) -> str:
    return f"{layout.run_dir}/{LOCK_NAME}"


def read_holder(layout: RunLayout) -> Holder | None:
    """The current lock holder, or None when the run is not locked (or the lock is unreadable)."""
    try:
        raw = layout.root.read_bytes(lock_path(layout))
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        return None


def writer_alive(layout: RunLayout) -> bool:
    """Is a command writing this run right now?"""
    holder = read_holder(layout)
    return holder is not None and holder.alive()


class RunLock:
    """The writer lock of one run; :meth:`acquire`, then :meth:`release` (or use ``with``)."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self.path = lock_path(layout)
        self.token = os.urandom(8).hex()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _record(self, started: float) -> bytes:
        me = os.getpid()
        data: dict[str, Any] = {
            "pid": me,
            "pid_started": _pid_started(me),
            "host": socket.gethostname(),
            "started": started,
            "heartbeat": time.time(),
            "token": self.token,
        }
        return json.dumps(data).encode()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            RunLockedError: another live command holds it.
        """
        if self.held:
            return
        root = self.layout.root
        for _ in range(3):
            holder = read_holder(self.layout)
            if holder is not None and holder.alive():
                if holder.host == socket.gethostname() and holder.pid == os.getpid():
                    return  # this process already writes the run (e.g. a sweep's next model)
                raise RunLockedError(
                    f"run {self.layout.run_id!r} in {root.uri!r} is being written by another "
                    f"command ({holder.describe()}); wait for it to finish or stop it, then "
                    "run again (finished shards are kept)"
                )
            if root.is_local:
                if os.path.exists(self.path):
                    self._take_over(holder)
                os.makedirs(self.layout.run_dir, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    continue  # someone else took it first: look again
                with os.fdopen(fd, "wb") as f:
                    f.write(self._record(time.time()))
                break
            root.write_atomic(self.path, self._record(time.time()))
            time.sleep(S3_SETTLE_S)
            again = read_holder(self.layout)
            if again is not None and again.token == self.token:
                break
        else:
            raise RunLockedError(
                f"run {self.layout.run_id!r} in {root.uri!r}: another command took the writer "
                "lock at the same moment; run again once it has finished"
            )
        self.held = True
        self._started = time.time()
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _take_over(self, stale: Holder | None) -> None:
        """Move a stale (or unreadable) lock aside; put back a live one a racing command took."""
        aside = f"{self.path}.stale-{self.token}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, "rb") as f:
                moved = json.loads(f.read()).get("token")
        except (OSError, ValueError, AttributeError):
            moved = None
        if stale is not None and moved != stale.token:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)  # a live lock taken meanwhile: restore it
        os.unlink(aside)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat only ages the heartbeat
                self.layout.root.write_atomic(self.path, self._record(self._started))

    def release(self) -> None:
        """Give the lock up (only if this command still holds it)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = read_holder(self.layout)
        if holder is not None and holder.token == self.token:
            self.layout.root.delete(self.path)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
