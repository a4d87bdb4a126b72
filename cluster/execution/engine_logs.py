"""Where engine output goes: a log file under the run instead of the terminal.

Model engines write to their process's standard output and error: weight-loading and GGUF
conversion progress bars, library warnings, C++ logging. Ray streams every line of a worker's
output to the driver's terminal (``log_to_driver``). A quiet run keeps the terminal for our own
progress: each replica points its file descriptors 1 and 2 at one append-only log file under the
run, before its engine loads, and the driver starts Ray with ``log_to_driver=False`` so worker
start-up chatter stays in Ray's own session logs. A failing replica's last lines are read back
from that file and shown with its error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections import deque

from storage import RunLayout

#: Lines of a replica's log shown with its error.
TAIL_LINES = 16


def log_path(layout: RunLayout) -> str:
    """The engine log of a run: ``<root>/runs/<run_id>/logs/engine.log`` for a local root; for
    an ``s3://`` root a local file under the temporary folder (logs are local to a machine)."""
    if layout.root.is_local:
        return os.path.join(layout.run_dir, "logs", "engine.log")
    return os.path.join(tempfile.gettempdir(), "valuescope-logs", layout.run_id, "engine.log")


def redirect_output(path: str) -> bool:
    """Point this process's standard output and error (file descriptors 1 and 2, so C-level
    writes too) at ``path``, appended to. False, with nothing changed, when the file cannot be
    opened (e.g. a node that cannot create the folder)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return False
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return True


def tail(path: str | None, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a log (progress-bar redraws split at ``\\r``);
    [] when there is no such file."""
    if not path or not os.path.exists(path):
        return []
    keep: deque[str] = deque(maxlen=lines)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            shown = [s.rstrip() for s in line.rstrip("\n").split("\r") if s.strip()]
            if shown and shown[-1].strip(" ^~"):  # not a traceback's underline
                keep.append(shown[-1])
    return list(keep)
