from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from cluster.cli import cli

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['valuescope', '--help']\n"
        "from cluster.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('ray', 'torch', 'transformers', 'vllm') if m in sys.modules]\n"
        "print('HEAVY', heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY")][0]
    assert "[]" in line, line
    start = time.perf_counter()
    proc = run_cli("--help")
    assert proc.returncode == 0 and "valuescope" in proc.stdout
    assert time.perf_counter() - start < 1.0


def test_every_subcommand_help_is_fast_and_light():
    """``--help`` of every command (and sub-command group) imports no engine, in one process."""
    code = (
        "import sys, time\n"
        "from click.testing import CliRunner\n"
        "from cluster.cli import cli\n"
        "import click\n"
        "def walk(group, path):\n"
        "    for name, cmd in group.commands.items():\n"
        "        yield [*path, name]\n"
        "        if isinstance(cmd, click.Group):\n"
        "            yield from walk(cmd, [*path, name])\n"
        "runner = CliRunner(); slow = []; n = 0\n"
        "for path in walk(cli, []):\n"
        "    t = time.perf_counter(); r = runner.invoke(cli, [*path, '--help'])\n"
        "    n += 1; assert r.exit_code == 0, (path, r.output)\n"
        "    if time.perf_counter() - t > 1.0: slow.append(path)\n"
        "heavy = [m for m in ('ray', 'torch', 'transformers', 'vllm') if m in sys.modules]\n"
        "print('HELP', n, heavy, slow)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("HELP")]
    assert line, out.stderr
    n, rest = line[0].split(" ", 2)[1:]
    assert int(n) >= 20 and rest == "[] []", line[0]


def test_our_errors_are_one_line_with_exit_1(tmp_path):
    proc = run_cli("outcomes", "show", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "file not found" in proc.stderr
    debug = run_cli("--debug", "outcomes", "show", str(tmp_path / "missing.yaml"))
    assert "Traceback" in debug.stderr


def test_validate_prints_resolved_spec_and_schema(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: demo\n")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0 and "batch_size: 16" in result.output
    schema = CliRunner().invoke(cli, ["validate", "--schema"])
    assert json.loads(schema.output)["title"] == "RunSpec"


def test_sql_formats_and_refusal(root):
    ok = run_cli("sql", "SELECT count(*) AS n FROM comparisons", "--root", root, "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"n": 0}
    refused = run_cli("sql", "COPY (SELECT 1) TO 'x.csv'", "--root", root)
    assert refused.returncode == 1 and "read-only" in refused.stderr
    csv = run_cli("sql", "SELECT 1 AS a, 'x' AS b", "--root", root, "--format", "csv")
    assert csv.stdout.splitlines()[0] == '"a","b"'


def test_outcomes_show_and_env():
    show = run_cli("outcomes", "show", "starter", "--limit", "3")
    assert show.returncode == 0 and "starter: " in show.stdout
    env = run_cli("env")
    assert env.returncode == 0 and "pyarrow" in env.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_exits_130(tmp_path):
    code = (
        "import sys\nfrom cluster.cli import commands as c\n"
        "@c.cli.command('sleepy')\ndef sleepy():\n    raise KeyboardInterrupt\n"
        "c.main(['sleepy'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and "interrupted" in proc.stderr


def test_agent_and_ray_flags_reach_the_spec(tmp_path):
    from cluster.cli.options import build_spec

    spec = build_spec(
        None,
        models=("simulated",),
        noise=0.5,
        position_bias=1.2,
        label_noise=0.1,
        refusal_rate=0.2,
        ray_address="10.0.0.1:6379",
        root=str(tmp_path),
    )
    (model,) = spec.models
    assert (model.noise, model.position_bias, model.label_noise, model.refusal_rate) == (
        0.5,
        1.2,
        0.1,
        0.2,
    )
    assert spec.execution.ray_address == "10.0.0.1:6379"
