"""Design presets: the paper's sizes, the prompt count said before running, and the paper's
variants of maximisation and political values on planted agents at a reduced size."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from specs import spec_of

from cluster.cli import cli
from cluster.experiments.analyze import analyze
from cluster.experiments.common import AnalysisError, base_from_spec
from cluster.experiments.presets import options_for, planned_prompts
from cluster.experiments.values import exchange_design, time_discounting_design
from elicit import generators as gen
from storage.catalog import query


def test_paper_preset_has_the_paper_sizes(root):
    paper = options_for("paper")
    assert paper.preset == "paper" and len(paper.ns) == 28 and 95 <= len(paper.money) <= 100
    assert paper.ns[0] == 1 and paper.ns[-1] == 1_000_000
    assert paper.n_lotteries == 100
    _, grid = time_discounting_design(paper)
    assert len({p["delay_months"] for p in grid}) == 60 and len(grid) == 60 * 30
    assert paper.persona_question == "question" and paper.maximisation_prompts == "question"
    assert paper.framing
    # Explicit options win over the preset; an unknown preset is a one-line error.
    assert options_for("paper", {"n_lotteries": 7}).n_lotteries == 7
    with pytest.raises(AnalysisError, match="unknown preset 'huge'"):
        options_for("huge")
    base = base_from_spec(spec_of(root, "plan", [{"name": "simulated"}]))
    xr = planned_prompts("exchange-rates", paper, base)
    assert xr == 2 * 2 * 8 * len(exchange_design(paper))  # both orders, framing, 8 per outcome
    assert planned_prompts("time-discounting", paper, base) == 2 * 60 * 30
    assert planned_prompts("completeness", paper, base) is None


def test_the_prompt_count_is_printed_before_running(root, ray_local):
    args = ["analyze", "time-discounting", "--preset", "paper", "--delays", "1,12",
            "--n-amounts", "6", "--model", "simulated", "--root", root]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = [k for k, line in enumerate(lines) if "preset paper: 24 prompts per model" in line]
    ran = [k for k, line in enumerate(lines) if "in run" in line]
    assert said and ran and said[0] < ran[0]
    assert "[95% CI]" in result.output  # estimates print with their interval


def test_paper_maximisation_asks_under_each_question_and_counts_misses(root, ray_local):
    questions = gen.open_questions()[:2]
    truth = {}
    for q in questions:
        for rank, cid in enumerate(q.candidates):
            truth[cid] = 2.0 - rank  # the first candidate is the agent's favourite
    # Asked under the first question's own text, the agent ranks that question's last
    # candidate first; its free-form answer (its plain favourite) then ranks second.
    first = questions[0]
    agent = {
        "name": "simulated",
        "noise": 0.2,
        "utilities": truth,
        "persona_offsets": {f"text:{first.text}": {first.candidates[-1]: 10.0}},
    }
    opts = options_for("paper", {"n_questions": 2})
    [out] = analyze("maximisation", spec=spec_of(root, "max", [agent]), options=opts)
    row = out.row
    assert row["prompts"] == "question" and row["n_runs"] == 2
    assert row["top1_rate"] == 0.5 and row["top1_rate_all"] == 0.5
    assert row["top1_rate_all_lo"] < 0.5 < row["top1_rate_all_hi"]  # Wilson over 2 questions
    wordings = query(
        root, "SELECT DISTINCT template_id FROM comparisons ORDER BY template_id"
    ).to_pylist()
    assert [w["template_id"] for w in wordings] == [f"maximisation-{q.id}" for q in questions]


def test_paper_political_asks_the_persona_in_the_question(root, ray_local):
    """The persona phrase appears only in the question: an agent that raises one policy when it
    reads the phrase shows it in that persona's run and in no other."""
    persona = gen.political_personas()[0]
    policies = [o.id for o in gen.policy_outcomes()][:32]
    opts = options_for("paper", {"n_policies": 6, "personas": 2})
    from cluster.experiments.common import subset

    asked = subset(gen.policy_outcomes(), 6, opts.seed).ids
    target = asked[0]  # the least liked of the six without the persona
    agent = {
        "name": "simulated",
        "noise": 0.3,
        "utilities": {p: 0.5 * k for k, p in enumerate(policies)},
        "persona_offsets": {f"text:would {persona.description} prefer": {target: 40.0}},
    }
    spec = spec_of(root, "pol", [agent])
    [out] = analyze("political", spec=spec, options=opts)
    assert out.row["persona_question"] == "question" and out.row["n_references"] == 2
    rows = query(
        root,
        "SELECT run_id, outcome_id, mu FROM utilities ORDER BY run_id, mu DESC",
    ).to_pylist()
    best = {}
    for r in rows:
        best.setdefault(r["run_id"], r["outcome_id"])
    persona_runs = [rid for rid in best if f"-political-{persona.id}-" in rid]
    others = [rid for rid in best if rid not in persona_runs]
    assert len(persona_runs) == 1 and best[persona_runs[0]] == target
    assert all(best[rid] != target for rid in others)


def test_paper_expected_utility_and_discounting_at_a_reduced_size(root, ray_local):
    """The paper preset's statistics, shrunk: a planted EU maximiser keeps violations low with
    an interval, and a planted exponential discounter gets a supported label whose rate
    interval holds the planted k."""
    import math

    import numpy as np

    from cluster.experiments.coherence import expected_utility_design
    from elicit.outcomes import load_outcomes

    opts = options_for("paper", {"n_base": 5, "n_lotteries": 12, "n_events": 4})
    outcomes = expected_utility_design(load_outcomes("starter"), opts)
    rng = np.random.default_rng(0)
    truth = {
        o.id: float(rng.normal())
        for o in outcomes
        if o.attributes.get("kind") not in ("lottery", "event")
    }
    for o in outcomes:
        if o.attributes.get("kind") in ("lottery", "event"):
            pairs = zip(o.attributes["components"], o.attributes["probs"], strict=True)
            truth[o.id] = sum(p * truth[c] for c, p in pairs)
    agent = {"name": "simulated", "noise": 0.3, "utilities": truth}
    [out] = analyze("expected-utility", spec=spec_of(root, "eu", [agent]), options=opts)
    row = out.row
    assert row["n_lotteries"] == 12 and row["violation_rate_hi"] < 0.3
    assert row["pearson_r_lo"] > 0.8 and row["implicit_pearson_r_lo"] is not None

    k = 0.04
    opts = options_for("paper", {"delays": (1, 3, 6, 12, 18, 24, 36, 48), "n_amounts": 12})
    grid, _ = time_discounting_design(opts)
    utilities = {
        o.id: 2.0
        * math.log(o.attributes["amount"] * math.exp(-k * o.attributes["delay_months"]) / 1000)
        for o in grid
    }
    agent = {"name": "simulated", "noise": 0.4, "utilities": utilities}
    [out] = analyze("time-discounting", spec=spec_of(root, "td", [agent]), options=opts)
    row = out.row
    assert row["better"] == "exponential" and row["better_supported"], row
    assert row["k_exponential_lo"] <= k <= row["k_exponential_hi"]
    assert row["monotonicity_amount"] > 0.8 and row["monotonicity_delay"] > 0.8
