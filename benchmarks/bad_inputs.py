"""Bad input, tried as a new user would: every case through the installed ``valuescope``.

Each case runs in a fresh folder (its own working directory, with only the files the case
writes) and names a results root that does not exist yet. A case is a *clean error* when the
command exits with a non-zero code, prints exactly one line on standard error and no traceback;
its root is *untouched* when, afterwards, neither the named root nor ``./results`` exists and
the folder holds only the case's own files.

Run: ``.venv/bin/python benchmarks/bad_inputs.py`` (prints one line per case and the tally;
``--json`` for machine-readable output). ``tests/cluster/test_bad_input.py`` runs the same
cases in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
TIMEOUT_S = float(os.environ.get("VS_BAD_INPUT_TIMEOUT_S", "300"))

SIM = "models: [{name: simulated}]\nroot: R\n"
"""Spec lines every spec case starts from (``R`` is replaced by the case's root)."""


@dataclass(frozen=True)
class Case:
    """One bad input: files to write, then the command line (``{root}`` is the results root)."""

    name: str
    argv: tuple[str, ...]
    files: dict[str, bytes] = field(default_factory=dict)
    expect: str = ""
    """A fragment the one-line error must contain (what it names)."""


def _spec(body: str) -> dict[str, bytes]:
    return {"spec.yaml": body.encode()}


RUN = ("run", "spec.yaml")
SIM_FLAGS = ("--model", "simulated", "--root", "{root}")

CASES: tuple[Case, ...] = (
    Case("empty spec file", RUN, {"spec.yaml": b""}, "spec.yaml"),
    Case("spec of comments only", RUN, {"spec.yaml": b"# nothing yet\n"}, "spec.yaml"),
    Case("empty spec, validate", ("validate", "spec.yaml"), {"spec.yaml": b""}, "spec.yaml"),
    Case(
        "Latin-1 spec",
        RUN,
        {"spec.yaml": "name: caf\xe9\nmodels: [{name: simulated}]\n".encode("latin-1")},
        "UTF-8",
    ),
    Case(
        "Latin-1 spec with a flag",
        (*RUN, "--root", "{root}"),
        {"spec.yaml": "name: caf\xe9\n".encode("latin-1")},
        "UTF-8",
    ),
    Case("YAML syntax error", RUN, _spec(SIM + "design: {kind: full\n"), "spec.yaml:"),
    Case(
        "YAML syntax error with a flag",
        (*RUN, "--root", "{root}"),
        _spec("models: [simulated\n"),
        "spec.yaml:",
    ),
    Case("YAML tab indentation", RUN, _spec(SIM + "design:\n\tkind: full\n"), "spec.yaml:"),
    Case("spec is a list", RUN, _spec("- simulated\n"), "mapping"),
    Case(
        "replicas: 0",
        RUN,
        _spec("root: R\nmodels: [{name: simulated, replicas: 0}]\n"),
        "replicas",
    ),
    Case(
        "replicas: -2",
        RUN,
        _spec("root: R\nmodels: [{name: simulated, replicas: -2}]\n"),
        "replicas",
    ),
    Case("--replicas 0", ("run", *SIM_FLAGS, "--replicas", "0"), expect="replicas"),
    Case(
        "noise: .inf",
        RUN,
        _spec("root: R\nmodels: [{name: simulated, noise: .inf}]\n"),
        "noise",
    ),
    Case(
        "position_bias: .nan",
        RUN,
        _spec("root: R\nmodels: [{name: simulated, position_bias: .nan}]\n"),
        "position_bias",
    ),
    Case(
        "unknown HF model",
        ("run", "--model", "no-such-org/no-such-model-xyz", "--root", "{root}"),
        expect="no-such-org/no-such-model-xyz",
    ),
    Case(
        "missing local model folder",
        ("run", "--model", "./no-such-folder", "--root", "{root}"),
        expect="no-such-folder",
    ),
    Case(
        "pairs_file missing",
        ("run", *SIM_FLAGS, "--design", "pairs", "--pairs-file", "nope.csv"),
        expect="nope.csv",
    ),
    Case(
        "pairs_file with unknown ids",
        ("run", *SIM_FLAGS, "--design", "pairs", "--pairs-file", "pairs.csv"),
        {"pairs.csv": b"outcome_a,outcome_b\nnot-an-id,also-not\n"},
        "pairs.csv",
    ),
    Case(
        "pairs_file without the columns",
        ("run", *SIM_FLAGS, "--design", "pairs", "--pairs-file", "pairs.csv"),
        {"pairs.csv": b"a,b\nx,y\n"},
        "pairs.csv",
    ),
    Case("preview -n -1", ("preview", "--model", "simulated", "-n", "-1"), expect="-1"),
    Case("preview -n 0", ("preview", "--model", "simulated", "-n", "0"), expect="0"),
    Case("sql --limit -1", ("sql", "SELECT 1", "--root", "{root}", "--limit", "-1"), expect="-1"),
    Case(
        "sql --root on a file",
        ("sql", "SELECT 1", "--root", "afile.txt"),
        {"afile.txt": b"not a folder\n"},
        "afile.txt",
    ),
    Case("--budget 0", ("run", *SIM_FLAGS, "--budget", "0"), expect="budget"),
    Case("--per-round -5", ("run", *SIM_FLAGS, "--per-round", "-5"), expect="per_round"),
    Case("--shard-size 0", ("run", *SIM_FLAGS, "--shard-size", "0"), expect="shard_size"),
    Case("--batch-size 0", ("run", *SIM_FLAGS, "--batch-size", "0"), expect="batch_size"),
    Case(
        "outcome id true",
        ("run", *SIM_FLAGS, "--outcomes", "o.yaml"),
        {"o.yaml": b"- {id: true, text: A.}\n- {id: b, text: B.}\n"},
        "o.yaml",
    ),
    Case(
        "outcome id [x]",
        ("run", *SIM_FLAGS, "--outcomes", "o.yaml"),
        {"o.yaml": b"- {id: [x], text: A.}\n- {id: b, text: B.}\n"},
        "o.yaml",
    ),
    Case(
        "ragged CSV row",
        ("run", *SIM_FLAGS, "--outcomes", "o.csv"),
        {"o.csv": b"id,text\na,A.\nb,B.,extra\n"},
        "o.csv",
    ),
    Case(
        "attributes cell not JSON",
        ("run", *SIM_FLAGS, "--outcomes", "o.csv"),
        {"o.csv": b"id,text,attributes\na,A.,{oops\nb,B.,{}\n"},
        "o.csv",
    ),
    Case(
        "models whose folders collide",
        RUN,
        _spec(
            "root: R\nmodels: [{name: simulated}, {name: 'sim a', scorer: simulated},"
            " {name: sim_a, scorer: simulated}]\n"
        ),
        "sim a",
    ),  # fmt: skip
    Case(
        "base_url with user:password@",
        RUN,
        _spec(
            "root: R\nmodels: [{name: m, scorer: openai, "
            "base_url: 'http://bob:hunter2@127.0.0.1:9/v1'}]\n"
        ),
        "base_url",
    ),
)


@dataclass
class Outcome:
    name: str
    rc: int
    stderr: str
    clean: bool
    untouched: bool
    named: bool
    seconds: float


def materialise(case: Case, folder: Path) -> tuple[list[str], str]:
    """Write the case's files under ``folder``; returns (argv, root)."""
    root = str(folder / "results-of-case")
    for name, data in case.files.items():
        (folder / name).write_bytes(data.replace(b"root: R\n", f"root: {root}\n".encode()))
    return [a.replace("{root}", root) for a in case.argv], root


def judge(case: Case, folder: Path, root: str, rc: int, stderr: str, seconds: float) -> Outcome:
    text = stderr.strip()
    clean = rc != 0 and bool(text) and "\n" not in text and "Traceback" not in text
    left = sorted(p.name for p in folder.iterdir())
    untouched = not os.path.exists(root) and left == sorted(case.files)
    named = case.expect in text
    return Outcome(case.name, rc, text, clean, untouched, named, seconds)


def run_case(case: Case) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="vs-bad-") as tmp:
        folder = Path(tmp) / "work"
        folder.mkdir()
        argv, root = materialise(case, folder)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("RAY_ADDRESS", None)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [EXE, *argv],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # a case that starts Ray is stopped with all it started
        )
        try:
            _, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            stderr = f"(still running after {TIMEOUT_S:g} s: stopped)\n{stderr}"
        return judge(case, folder, root, proc.returncode, stderr, time.perf_counter() - start)


def main() -> None:
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    results = [run_case(c) for c in CASES if not only or any(o in c.name for o in only)]
    if "--json" in sys.argv:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    else:
        for r in results:
            flags = f"{'clean' if r.clean else 'NOT CLEAN'}, {'untouched' if r.untouched else 'ROOT WRITTEN'}"
            print(f"{r.name:32} rc={r.rc} {r.seconds:5.1f}s {flags}: {r.stderr[-160:]!r}")
    n = len(results)
    clean = sum(r.clean and r.named for r in results)
    untouched = sum(r.untouched for r in results)
    print(f"bad inputs tried: {n}; clean one-line errors naming the input: {clean}; "
          f"roots left untouched: {untouched}")  # fmt: skip


if __name__ == "__main__":
    main()
