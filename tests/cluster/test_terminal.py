"""`valuescope run` as a new user sees it: a real pseudo-terminal of 80×24, the real CLI, a
local Ray, the simulated agent. Engine chatter is real output written by the replica process
(the ``chatter`` fault writes engine-like lines to its file descriptors 1 and 2)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOX = tuple("┏┃┡│└╭╰┌├")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")


def cells(line: str) -> int:
    from rich.cells import cell_len

    return cell_len(line)


def drive(
    args: list[str],
    *,
    faults: dict | None = None,
    interrupt_on: str | None = None,
    timeout: float = 300.0,
) -> tuple[int, list[str]]:
    """Run the CLI on a fresh 80×24 pseudo-terminal; returns (exit status, screen lines).

    Lines are what the terminal keeps: ANSI codes dropped, and of a line redrawn with ``\\r``
    (a progress bar) only its last state. ``interrupt_on``: type Ctrl-C (the terminal sends
    SIGINT to the foreground process group) once that text has appeared.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    env.pop("VALUESCOPE_FAULTS", None)
    if faults:
        env["VALUESCOPE_FAULTS"] = json.dumps(faults)
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal, then become the CLI
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.execve(EXE, [EXE, *args], env)
    raw = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            raw += chunk
        if interrupt_on and not sent and interrupt_on.encode() in raw:
            os.write(fd, b"\x03")
            sent = True
    else:
        os.kill(pid, 9)
        pytest.fail(f"timed out; output so far:\n{raw.decode(errors='replace')}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = ANSI.sub("", raw.decode("utf-8", errors="replace"))
    lines = []
    for line in text.split("\n"):
        states = [s for s in line.split("\r") if s.strip()]
        lines.append(states[-1].rstrip() if states else "")
    while lines and not lines[-1]:
        lines.pop()
    return os.waitstatus_to_exitcode(status), lines


def test_quickstart_reads_cleanly_in_80_columns(tmp_path):
    root = str(tmp_path / "r")
    rc, lines = drive(["run", "--model", "simulated", "--root", root], faults={"chatter": 3})
    screen = "\n".join(lines)
    assert rc == 0, screen
    # quiet engines: the replica's output went to the run's engine log, printed once
    assert "chatter" not in screen and "pid=" not in screen and "WARNING" not in screen, screen
    [log_line] = [ln for ln in lines if "engine logs:" in ln]
    log = log_line.split("engine logs: ")[1]
    with open(log) as f:
        assert log.startswith(root) and "chatter loading 2: UserWarning" in f.read()
    # a name that says what ran
    assert lines[0].startswith("run simulated-starter-"), lines[0]
    # results as they form: one line after each active-learning round, from round 1 on
    rounds = [ln for ln in lines if re.match(r"simulated round \d+: [\d,]+ pairs, held-out", ln)]
    assert rounds[0].startswith("simulated round 1: 80 pairs, held-out ") and len(rounds) >= 2
    assert all("; top " in ln and "; bottom " in ln for ln in rounds)
    # the final table fits 80 columns, texts cut with an ellipsis
    table = [ln for ln in lines if ln.startswith(BOX)]
    assert len(table) >= 24 and max(cells(ln) for ln in table) <= 80
    assert any(ln.rstrip(" │").endswith("…") for ln in table)
    assert "the run's own fit" in screen
    assert len(lines) < 60, f"{len(lines)} lines:\n{screen}"


def test_verbose_shows_engine_output(tmp_path):
    proc = subprocess.run(
        [EXE, "run", "--model", "simulated", "--design", "full", "--root", str(tmp_path / "r")]
        + ["--progress", "none", "--verbose"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VALUESCOPE_FAULTS": json.dumps({"chatter": 2})},
    )
    assert proc.returncode == 0, proc.stderr
    assert "chatter loading 1: UserWarning: stderr" in proc.stdout + proc.stderr
    assert "engine logs:" not in proc.stderr


def test_a_failing_replica_shows_its_last_lines(tmp_path):
    proc = subprocess.run(
        [EXE, "run", "--model", "simulated", "--root", str(tmp_path / "r"), "--progress", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VALUESCOPE_FAULTS": json.dumps({"chatter": 2, "fail_init": True})},
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "valuescope: error: " in err and "engine could not start" in err
    tail = err.split("last lines of ", 1)[1]
    assert "engine.log:" in tail.splitlines()[0]
    assert "chatter loading 1: UserWarning: stderr" in tail
    assert "RuntimeError: injected fault: the engine failed to start" in tail
    assert "chatter" not in err.split("last lines of ", 1)[0]  # only with the error


def test_ctrl_c_after_a_round_leaves_a_fitted_run(tmp_path):
    root = str(tmp_path / "r")
    args = ["run", "--model", "simulated", "--root", root, "--run-id", "cc"]
    # each shard takes 2 s, so Ctrl-C typed after round 1's line lands inside round 2
    rc, lines = drive(args, faults={"sleep_s": 2}, interrupt_on="simulated round 1:")
    screen = "\n".join(lines)
    assert rc == 130, screen
    assert f"what was asked so far is fitted: valuescope show cc --root {root}" in screen
    assert "resume (nothing asked is asked again): valuescope run --model simulated" in screen
    show = subprocess.run(
        [EXE, "show", "cc", "--root", root], capture_output=True, text=True, timeout=120
    )
    assert show.returncode == 0, show.stderr
    fitted = int(re.search(r"([\d,]+) pairs from", show.stdout).group(1).replace(",", ""))
    assert 80 <= fitted < 1011  # round 1 and whatever of round 2 had landed
    status = subprocess.run(
        [EXE, "sql", "SELECT status FROM runs", "--root", root, "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.stdout.split() == ['"status"', '"interrupted"']
    again = subprocess.run(
        [EXE, *args, "--progress", "none"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    asked = re.search(
        r"1,011 training \+ 158 held-out pairs; ([\d,]+) prompts asked now", again.stderr
    )
    assert asked is not None, again.stderr
    assert (
        int(asked.group(1).replace(",", "")) <= 2338 - 316 - 160
    )  # rounds 0 and 1 not asked again
