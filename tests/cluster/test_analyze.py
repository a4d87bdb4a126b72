"""`valuescope analyze` end to end on simulated agents whose answers are known."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from specs import spec_of

from cluster.cli import cli
from cluster.experiments.analyze import Options, analyze
from cluster.experiments.coherence import expected_utility_design, match_answer
from cluster.experiments.common import sparse_pairs
from cluster.experiments.values import exchange_design, time_discounting_design
from cluster.spec import RunSpec
from elicit.outcomes import load_outcomes
from storage.catalog import query

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyses") / "results"
    path.mkdir()
    return str(path)


def sql(root: str, text: str) -> list[dict]:
    return query(root, text).to_pylist()


def assert_png(path: str | None) -> None:
    assert path is not None
    data = Path(path).read_bytes()
    assert data.startswith(PNG) and len(data) > 5000


def test_time_discounting_exponential_agent_is_exponential(shared_root, ray_local):
    opts = Options(delays=(1, 6, 12, 24, 48), n_amounts=12)
    outcomes, _ = time_discounting_design(opts)
    k = 0.03
    truth = {
        o.id: 2.0
        * math.log(o.attributes["amount"] * math.exp(-k * o.attributes["delay_months"]) / 1000)
        for o in outcomes
    }
    model = {"name": "simulated", "noise": 0.4, "utilities": truth}
    spec = spec_of(shared_root, "disc", [model])
    [out] = analyze("time-discounting", spec=spec, options=opts)
    assert out.row["better"] == "exponential"
    assert out.row["k_exponential"] == pytest.approx(k, rel=0.1)
    assert out.row["n_delays_bracketed"] == 5
    assert_png(out.figure)
    delays = sql(
        shared_root, "SELECT * FROM analysis_time_discounting_delays ORDER BY delay_months"
    )
    assert [d["status"] for d in delays] == ["ok"] * 5
    assert delays[-1]["multiplier"] == pytest.approx(math.exp(k * 48), rel=0.1)


def test_exchange_rates_recover_three_to_one(shared_root, ray_local):
    opts = Options(groups=("animals",), n_entities=2, ns=(1, 3, 10, 30, 100, 300, 1000), money=())
    outcomes = exchange_design(opts)
    intercept = {"chickens": 0.0, "pigs": 0.6 * math.log(3.0)}  # one pig = three chickens
    truth = {
        o.id: 0.6 * math.log(o.attributes["n"]) + intercept[o.attributes["entity"]]
        for o in outcomes
    }
    spec = spec_of(shared_root, "xr", [{"name": "simulated", "noise": 0.5, "utilities": truth}])
    [out] = analyze(
        "exchange-rates", spec=spec, options=Options(**{**opts.__dict__, "pivot": "chickens"})
    )
    assert out.row["n_valid"] == 2 and out.row["pivot"] == "chickens"
    rates = {
        r["entity"]: r for r in sql(shared_root, "SELECT * FROM analysis_exchange_rates_rates")
    }
    pig = rates["pigs"]
    assert pig["rate_lo"] <= 3.0 <= pig["rate_hi"]
    assert pig["rate"] == pytest.approx(3.0, rel=0.2)
    assert_png(out.figure)


def test_transitivity_of_a_low_noise_agent(shared_root, ray_local):
    spec = spec_of(shared_root, "tri", [{"name": "simulated", "seed": 3, "noise": 0.15}])
    [out] = analyze("transitivity", spec=spec, options=Options(n_outcomes=10))
    assert out.row["source"] == "elicited" and out.row["n_triads"] == 120  # C(10, 3)
    assert out.row["mean_cycle_prob"] < 0.02 and out.row["hard_cycle_rate"] == 0.0
    assert_png(out.figure)


def test_expected_utility_maximiser_has_few_violations(shared_root, ray_local):
    opts = Options(n_base=5, n_lotteries=10, n_events=3)
    outcomes = expected_utility_design(load_outcomes("starter"), opts)
    rng = np.random.default_rng(0)
    truth: dict[str, float] = {
        o.id: float(rng.normal())
        for o in outcomes
        if o.attributes.get("kind") not in ("lottery", "event")
    }
    for o in outcomes:
        if o.attributes.get("kind") in ("lottery", "event"):
            comps, probs = o.attributes["components"], o.attributes["probs"]
            truth[o.id] = sum(p * truth[c] for c, p in zip(comps, probs, strict=True))
    spec = spec_of(shared_root, "eu", [{"name": "simulated", "noise": 0.3, "utilities": truth}])
    [out] = analyze("expected-utility", spec=spec, options=opts)
    assert out.row["violation_rate"] < 0.1 and out.row["pearson_r"] > 0.9
    assert out.row["implicit_pearson_r"] > 0.8
    assert_png(out.figure)


def test_base_run_analyses_through_the_cli(shared_root, ray_local):
    """Completeness, robustness and convergence read one base run of two identical agents."""
    models = [
        {"name": "sim-a", "scorer": "simulated", "seed": 5, "noise": 0.5, "position_bias": 0.4},
        {"name": "sim-b", "scorer": "simulated", "seed": 5, "noise": 0.5, "position_bias": 0.4},
    ]
    spec_file = Path(shared_root).parent / "base.yaml"
    spec_file.write_text(
        json.dumps(
            {
                "name": "base",
                "root": shared_root,
                "models": models,
                "design": {"kind": "active", "budget": 150, "holdout": {"size": 40}},
                "fit": {"bootstrap": 0},
                "execution": {"progress": "none"},
            }
        )
    )
    runner = CliRunner()
    first = runner.invoke(cli, ["analyze", "completeness", str(spec_file)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    base = (
        spec_of(shared_root, "base", models)
        .model_copy(
            update={"design": RunSpec.model_validate(json.loads(spec_file.read_text())).design}
        )
        .resolved_run_id()
    )
    for name in ("robustness", "convergence"):
        args = ["analyze", name, base, "--root", shared_root, "--n-outcomes", "8"]
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    complete = sql(shared_root, "SELECT * FROM analysis_completeness ORDER BY model")
    assert [r["model"] for r in complete] == ["sim-a", "sim-b"]
    assert all(r["run_id"] == base and r["n_pairs"] == 190 for r in complete)
    assert 0 < complete[0]["decisiveness"] < 1
    robust = sql(shared_root, "SELECT * FROM analysis_robustness ORDER BY model")
    assert all(r["mean_p_first"] > 0.55 and r["first_share"] > 0.6 for r in robust)
    assert all(r["position_bias_beta"] > 0 for r in robust)
    assert all(
        r["position_bias_beta_lo"] <= r["position_bias_beta"] <= r["position_bias_beta_hi"]
        for r in robust
    )
    assert all(r["n_wordings"] == 4 and r["paraphrase_mean_spearman"] > 0.99 for r in robust)
    assert all(r["low_mass_share"] == 0 and r["error_share"] == 0 for r in robust)
    conv = sql(shared_root, "SELECT * FROM analysis_convergence")
    assert len(conv) == 2 and all(r["mean_pearson"] > 0.999 for r in conv)
    fig = Path(shared_root, "figures", f"run_id={base}", "model=all", "convergence.png")
    assert_png(str(fig))
    assert_png(str(Path(shared_root, "figures", f"run_id={base}", "model=sim-a", "robustness.png")))


def test_every_result_table_is_a_sql_view(shared_root):
    names = ["time_discounting", "exchange_rates", "transitivity", "expected_utility",
             "completeness", "robustness", "convergence"]  # fmt: skip
    for name in names:
        proc = subprocess.run(
            [EXE, "sql", f"SELECT * FROM analysis_{name}", "--root", shared_root, "--format", "json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        assert rows and all(r["analysis"] == name and r["base_run_id"] for r in rows)
    figures = list(Path(shared_root, "figures").rglob("*.png"))
    assert len(figures) >= len(names)
    assert all(f.read_bytes().startswith(PNG) for f in figures)


def test_unknown_analysis_and_missing_run_are_clear_errors(shared_root):
    bad = subprocess.run(
        [EXE, "analyze", "happiness", "--model", "simulated", "--root", shared_root],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "unknown analysis 'happiness'" in bad.stderr and "time-discounting" in bad.stderr
    missing = subprocess.run(
        [EXE, "analyze", "completeness", "no-such-run", "--root", shared_root],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "'no-such-run' is neither a spec file nor a run" in missing.stderr
    assert missing.stderr.count("\n") == 1  # one line, no traceback
    flags = subprocess.run(
        [EXE, "analyze", "completeness", "no-such-run", "--model", "x", "--root", shared_root],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert flags.returncode == 1 and "--model" in flags.stderr


def test_convergence_needs_two_models(root, ray_local):
    from cluster.experiments.analyze import AnalysisError

    spec = spec_of(root, "one", [{"name": "simulated"}], design={"kind": "active", "budget": 90})
    with pytest.raises(AnalysisError, match="has 1 model"):
        analyze("convergence", spec=spec)


def test_sparse_design_is_connected_and_sized():
    ids = [f"o{k}" for k in range(30)]
    pairs = sparse_pairs(ids, 70, seed=1)
    assert len(pairs) == 70 and len({frozenset(p) for p in pairs}) == 70
    reach, frontier = {ids[0]}, [ids[0]]
    while frontier:
        node = frontier.pop()
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                if x == node and y not in reach:
                    reach.add(y)
                    frontier.append(y)
    assert reach == set(ids)
    assert len(sparse_pairs(ids[:5], 100, seed=0)) == 10  # capped at the full graph


def test_free_form_answers_are_matched_to_candidates():
    cands = [
        ("q-science-alzheimers", "Scientists develop a cure for Alzheimer's disease."),
        ("q-science-fusion", "Scientists build a fusion power plant that supplies electricity."),
        ("q-science-flu", "Scientists create a vaccine that protects against every strain of flu."),
    ]
    question = "Which scientific breakthrough would you most like to see?"
    assert match_answer("A cure for Alzheimer's, without doubt.", cands, question) == cands[0][0]
    assert match_answer("I'd pick fusion power plants.", cands, question) == cands[1][0]
    assert match_answer("Scientists should do good work.", cands, question) is None
