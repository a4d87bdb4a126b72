"""Sweeps: spec validation, registry resolution, first-fit-decreasing plans, and a sweep of
simulated models end to end on the session's local Ray (2 CPUs: packed two at a time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cluster.cli import cli
from cluster.errors import SpecError
from cluster.jobs.sweep import load_sweep, parse_sweep, plan_waves, resolve_model, run_sweep
from storage.catalog import query


def sweep_file(tmp_path, text: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return str(path)


def test_models_are_filled_from_the_registry(tmp_path):
    spec = load_sweep(
        sweep_file(
            tmp_path,
            "name: fam\nmodels:\n"
            "  - name: Qwen/Qwen2.5-32B-Instruct\n"
            "  - {name: qwen2.5-7b-instruct, replicas: 2, options: {batch_size: 64}}\n"
            "  - {name: llama-3.1-8b-base}\n",
        )
    )
    big, small, base = (resolve_model(spec, m) for m in spec.models)
    assert big.key == "qwen2.5-32b-instruct" and big.run_id == "fam-qwen2.5-32b-instruct"
    assert (big.config.gpus_per_replica, big.config.tensor_parallel) == (2, 2)
    assert big.config.scorer == "vllm" and big.family == "qwen2.5" and big.params_b == 32.8
    assert big.gpus == 2 and small.gpus == 2 and small.config.batch_size == 64
    assert base.config.chat is False


def test_sweep_spec_errors_name_the_line_and_the_fix(tmp_path):
    with pytest.raises(SpecError, match=r"sweep.yaml:3: models.0.gpus: unknown field"):
        load_sweep(sweep_file(tmp_path, "name: s\nmodels:\n  - {name: simulated, gpus: 2}\n"))
    with pytest.raises(SpecError, match="share the key.*'simulated'.*distinct `key`"):
        parse_sweep({"name": "s", "models": [{"name": "simulated"}] * 2})
    with pytest.raises(SpecError, match="not in the registry"):
        spec = parse_sweep({"name": "s", "models": [{"name": "no-such-model"}]})
        resolve_model(spec, spec.models[0])
    with pytest.raises(SpecError, match="as model fields, not under options"):
        parse_sweep({"name": "s", "models": [{"name": "simulated", "options": {"replicas": 2}}]})


def test_first_fit_decreasing_plan():
    needs = {"a": (2.0, 1.0), "b": (1.0, 1.0), "c": (1.0, 1.0), "d": (4.0, 1.0), "e": None}
    # e (`replicas: auto`) takes the whole cluster; d fills the GPUs; a, b, c share one bin.
    assert plan_waves(needs, gpus=4, cpus=8) == [["e"], ["d"], ["a", "b", "c"]]
    # CPU-only cluster: CPU packing.
    cpu = {"x": (0.0, 1.0), "y": (0.0, 1.0), "z": (0.0, 1.0)}
    assert plan_waves(cpu, gpus=0, cpus=2) == [["x", "y"], ["z"]]
    with pytest.raises(SpecError, match="needs 8 GPUs.*cluster's 4 GPUs"):
        plan_waves({"huge": (8.0, 1.0)}, gpus=4, cpus=8)


def test_plan_flag_prints_resolved_models(tmp_path):
    path = sweep_file(tmp_path, "name: p\nmodels:\n  - name: gemma-3-27b-it\n")
    result = CliRunner().invoke(cli, ["sweep", path, "--plan"])
    assert result.exit_code == 0, result.output
    assert "run p-gemma-3-27b-it" in result.output and "2 GPU/replica, tp 2" in result.output


def test_sweep_of_three_simulated_models_end_to_end(root, ray_local):
    spec = parse_sweep(
        {
            "name": "sim",
            "root": root,
            "outcomes": ["starter"],
            "design": {"kind": "full"},
            "fit": {"bootstrap": 0},
            "execution": {"shard_size": 1000, "progress": "none"},
            "models": [
                {"name": "simulated", "key": "a", "options": {"seed": 1, "noise": 0.3}},
                # the same agent as `a`, answering more noisily
                {"name": "simulated", "key": "a-noisy", "options": {"seed": 1, "noise": 1.5}},
                {"name": "simulated", "key": "b", "options": {"seed": 2, "noise": 0.3}},
            ],
        }
    )
    said: list[str] = []
    result = run_sweep(spec, echo=said.append)
    assert result.waves == [["a", "a-noisy"], ["b"]]  # 2 CPUs: two models at a time
    assert [r.status for r in result.runs] == ["done"] * 3, [r.message for r in result.runs]
    rows = query(root, "SELECT key, run_id, status, holdout_accuracy FROM sweeps ORDER BY key")
    assert [r["run_id"] for r in rows.to_pylist()] == ["sim-a", "sim-a-noisy", "sim-b"]
    assert all(r["holdout_accuracy"] > 0.8 for r in rows.to_pylist())
    sims = {
        (r["key_a"], r["key_b"]): r["pearson"]
        for r in query(root, "SELECT * FROM sweep_similarity").to_pylist()
    }
    assert len(sims) == 3
    assert sims[("a", "a-noisy")] > 0.95  # same utilities, recovered twice
    assert abs(sims[("a", "b")]) < 0.5 and abs(sims[("a-noisy", "b")]) < 0.5
    # each model is its own run, every prompt once
    counts = query(root, "SELECT run_id, count(*) AS n FROM comparisons GROUP BY run_id")
    assert sorted(r["n"] for r in counts.to_pylist()) == [80 * 79] * 3
    manifest = json.loads((Path(root) / "sweeps" / "sweep=sim" / "sweep.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == ["sim-a", "sim-a-noisy", "sim-b"]
    # rerun: every model is done, nothing is asked or refitted again
    again = run_sweep(spec)
    assert all(r.message == "already done (skipped)" for r in again.runs)
    assert query(root, "SELECT count(*) AS n FROM fits").to_pylist() == [{"n": 3}]
