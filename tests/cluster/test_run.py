"""`valuescope run`: active learning and fitting end to end on the simulated agent."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import spearmanr

from cluster.errors import RunFailed
from cluster.pipeline.fitting import refit
from cluster.pipeline.run import run
from cluster.spec import RunSpec
from storage.catalog import query

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")


def sim_spec(root: str, **kw) -> RunSpec:
    data = {
        "name": "sim",
        "root": root,
        "outcomes": ["starter"],
        "models": [
            {"name": "simulated", "seed": 7, "noise": 0.6, "position_bias": 0.8, "label_noise": 0.3}
        ],
        "design": {"kind": "active", "per_round": 300, "holdout": {"size": 400}},
        "fit": {"bootstrap": 20},
        "execution": {"shard_size": 400, "progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)


def truth_and_fit(root: str):
    rows = query(
        root,
        """
        SELECT o.outcome_id, o.true_utility AS truth, u.mu, u.mu_lo, u.mu_hi
        FROM outcomes o JOIN utilities u USING (run_id, outcome_id)""",
    ).to_pydict()
    return {k: np.array(v) for k, v in rows.items()}


def test_active_run_recovers_true_utilities(root, ray_local):
    [result] = run(sim_spec(root))
    n = 80
    assert result.queried_pairs == int(2 * n * np.log2(n))  # the default budget, 1011 pairs
    assert result.holdout_pairs == 400
    roles = query(
        root, "SELECT role, count(*) AS k FROM round_pairs GROUP BY role ORDER BY role"
    ).to_pylist()
    assert roles == [
        {"role": "acquired", "k": 1011 - 80},
        {"role": "holdout", "k": 400},
        {"role": "start", "k": 80},
    ]
    # No pair is asked twice, and held-out pairs are never trained on.
    dupes = query(
        root, "SELECT count(*) - count(DISTINCT pair_id) AS d FROM round_pairs"
    ).to_pylist()
    assert dupes == [{"d": 0}]
    d = truth_and_fit(root)
    assert spearmanr(d["truth"], d["mu"]).statistic >= 0.98
    assert np.all(d["mu_lo"] <= d["mu"]) and np.all(d["mu"] <= d["mu_hi"])
    fit = query(root, "SELECT * FROM fits").to_pylist()[0]
    # Held-out accuracy of the fit vs what the true utilities achieve on the same pairs.
    held = query(
        root,
        """
        SELECT c.pair_id, avg(CASE WHEN c.orientation = 0 THEN c.p_a ELSE 1 - c.p_a END) AS p,
               any_value(CASE WHEN c.orientation = 0 THEN c.outcome_a ELSE c.outcome_b END) AS lo,
               any_value(CASE WHEN c.orientation = 0 THEN c.outcome_b ELSE c.outcome_a END) AS hi
        FROM comparisons c WHERE round = 0 GROUP BY c.pair_id""",
    ).to_pydict()
    truth = dict(
        zip(
            query(root, "SELECT outcome_id FROM outcomes").column(0).to_pylist(),
            d["truth"],
            strict=True,
        )
    )
    true_pred = ndtr(
        np.array([truth[a] - truth[b] for a, b in zip(held["lo"], held["hi"], strict=True)])
    )
    label = np.array(held["p"])
    keep = label != 0.5
    truth_acc = np.mean((true_pred[keep] > 0.5) == (label[keep] > 0.5))
    assert fit["holdout_accuracy"] >= truth_acc - 0.02
    # β is the agent's 0.8 probit shift in utility units; the fit reports it in sd(μ) units.
    beta = 0.8 / np.std(d["truth"])
    assert fit["position_bias_lo"] - 0.05 <= beta <= fit["position_bias_hi"] + 0.05
    assert fit["position_bias_lo"] > 0
    # In noise units: at a tie the agent picks A with Φ(0.8 / √(2·0.6²)), flattened by its label
    # noise to Φ(0.8 / √(2·0.6²·(1 + 0.3²))) ≈ 0.823 on average.
    tie = ndtr(0.8 / np.sqrt(2 * 0.6**2 * (1 + 0.3**2)))
    assert fit["first_at_tie_lo"] <= tie <= fit["first_at_tie_hi"]
    assert fit["first_at_tie_hi"] - fit["first_at_tie_lo"] < 0.05


def test_full_design_and_refit_with_bradley_terry(root, ray_local):
    spec = sim_spec(root, design={"kind": "full", "holdout": {"size": 200}}, fit={"bootstrap": 0})
    [result] = run(spec)
    assert result.queried_pairs == 80 * 79 // 2 - 200
    rows = refit(root, spec.resolved_run_id(), estimator="bt", position_bias=False)
    assert rows[0]["estimator"] == "bt" and rows[0]["holdout_accuracy"] > 0.8
    fits = query(root, "SELECT fit_id FROM fits ORDER BY fit_id").column(0).to_pylist()
    assert fits == ["bt", "thurstonian-pb"]


def test_interrupted_run_resumes_same_pairs(root, ray_local, tmp_path, monkeypatch):
    import json

    markers = tmp_path / "m"
    markers.mkdir()
    spec = sim_spec(root, execution={"shard_size": 400, "progress": "none", "max_shard_retries": 0})
    # The first shard 0 (round 0's) kills its replica once; with no retries the run fails there.
    monkeypatch.setenv(
        "VALUESCOPE_FAULTS", json.dumps({"die_on_shard": [0], "marker_dir": str(markers)})
    )
    with pytest.raises(RunFailed):
        run(spec)
    monkeypatch.delenv("VALUESCOPE_FAULTS")
    before = query(root, "SELECT round, pair_id FROM round_pairs ORDER BY ALL").to_pylist()
    assert query(root, "SELECT status FROM runs").column(0).to_pylist() == ["failed"]
    [result] = run(spec)
    after = query(root, "SELECT round, pair_id FROM round_pairs ORDER BY ALL").to_pylist()
    assert after[: len(before)] == before  # the rounds already planned were asked as planned
    assert result.queried_pairs == 1011
    counts = query(
        root,
        "SELECT count(*) AS n, count(DISTINCT (round, pair_id, orientation)) AS d FROM comparisons",
    ).to_pylist()[0]
    assert counts["n"] == counts["d"] == 2 * (1011 + 400)
    assert query(root, "SELECT status FROM runs").column(0).to_pylist() == ["done"]


def test_changed_spec_cannot_reuse_a_run_id(root, ray_local):
    run(sim_spec(root, run_id="fixed", design={"kind": "full"}, fit={"bootstrap": 0}))
    with pytest.raises(RunFailed, match="different spec"):
        run(sim_spec(root, run_id="fixed", mode={"kind": "sample"}))


def test_cli_run_show_fit_and_bad_spec(tmp_path):
    root = str(tmp_path / "r")
    proc = subprocess.run(
        [
            EXE,
            "run",
            "--model",
            "simulated",
            "--outcomes",
            "starter",
            "--root",
            root,
            "--run-id",
            "cli",
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy" in proc.stdout and "Reading:" in proc.stdout
    show = subprocess.run(
        [EXE, "show", "cli", "--root", root], capture_output=True, text=True, timeout=120
    )
    assert show.returncode == 0 and "utilities" in show.stdout
    refit_out = subprocess.run(
        [EXE, "fit", "cli", "--root", root, "--estimator", "bt"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refit_out.returncode == 0, refit_out.stderr
    missing = subprocess.run(
        [EXE, "show", "nope", "--root", root], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "runs in this root: cli" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("design:\n  kind: active\n  per_round: 0\n")
    out = subprocess.run([EXE, "run", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"{bad}:3: design.per_round = 0" in out.stderr
