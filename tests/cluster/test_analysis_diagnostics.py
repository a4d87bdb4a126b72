"""The critics' diagnostics and the corrected readings, end to end on simulated agents with a
planted order effect, a planted framing effect and a planted non-monotonic ladder."""

from __future__ import annotations

import math

import pytest
from specs import spec_of

from cluster.experiments.analyze import Options, analyze
from cluster.experiments.presets import options_for
from cluster.experiments.values import exchange_design
from storage.catalog import query

LADDER = Options(groups=("animals",), n_entities=2, ns=(3, 10, 30, 100, 300, 1000), money=())


def ladder_truth(pig_shift: dict[int, float] | None = None) -> dict[str, float]:
    """One pig = three chickens, utility 0.6·ln N; ``pig_shift`` bends the pig ladder."""
    intercept = {"chickens": 0.0, "pigs": 0.6 * math.log(3.0)}
    shift = pig_shift or {}
    return {
        o.id: 0.6 * math.log(o.attributes["n"])
        + intercept[o.attributes["entity"]]
        + (shift.get(o.attributes["n"], 0.0) if o.attributes["entity"] == "pigs" else 0.0)
        for o in exchange_design(LADDER)
    }


def test_planted_order_effect_near_indifference_is_recovered(root, ray_local):
    """An agent that favours the second-listed option shows it among near-indifferent pairs;
    an agent without the bias sits at ½ within its interval."""
    models = [
        {"name": "second", "scorer": "simulated", "seed": 2, "noise": 0.6, "position_bias": -1.0},
        {"name": "fair", "scorer": "simulated", "seed": 2, "noise": 0.6},
    ]
    spec = spec_of(root, "order", models, design={"kind": "active", "budget": 120})
    outs = {o.model: o.row for o in analyze("robustness", spec=spec,
                                             options=Options(paraphrases=False))}  # fmt: skip
    biased, fair = outs["second"], outs["fair"]
    assert biased["order_n_prompts"] >= 10
    assert biased["order_second_share"] > 0.8 and biased["order_second_share_lo"] > 0.6
    assert fair["order_second_share_lo"] < 0.5 < fair["order_second_share_hi"]
    # Every headline number of the row carries its interval.
    for key in ("mean_p_first", "first_share", "low_mass_share", "error_share"):
        assert biased[f"{key}_lo"] <= biased[key] <= biased[f"{key}_hi"], key
    assert biased["mean_p_first_hi"] < 0.5 < fair["mean_p_first_hi"]


def test_planted_framing_effect_and_bent_ladder_are_recovered(root, ray_local):
    """Under the mutual-exclusivity wording the agent's entity differences shrink to a quarter:
    the framed spread is a quarter of the plain one. A pig ladder that falls after N = 30 lowers
    the monotonicity, with an interval below 1."""
    framed = {
        "name": "simulated",
        "noise": 0.3,
        "utilities": ladder_truth(),
        "framing_phrase": "mutually exclusive",
        "framing_factor": 0.25,
    }
    spec = spec_of(root, "frame", [framed])
    # The paper preset (framing on) at a reduced size: two animals, six N, no money.
    reduced = {k: getattr(LADDER, k) for k in ("groups", "n_entities", "ns", "money")}
    opts = options_for("paper", {**reduced, "pivot": "chickens"})
    assert opts.framing
    [out] = analyze("exchange-rates", spec=spec, options=opts)
    row = out.row
    assert row["log10_rate_spread"] == pytest.approx(math.log10(3.0), abs=0.12)
    assert row["framing_spread_ratio"] == pytest.approx(0.25, abs=0.12)
    assert row["framed_log10_rate_spread_hi"] < row["log10_rate_spread_lo"]
    assert row["monotonicity"] == 1.0
    rates = query(root, "SELECT * FROM analysis_exchange_rates_rates WHERE entity = 'pigs'")
    pig = rates.to_pylist()[0]
    assert pig["framed_rate"] < pig["rate"] and pig["framed_rate_hi"] < pig["rate_lo"]

    bent = ladder_truth({100: -1.5, 300: -3.0, 1000: -4.5})
    spec = spec_of(root, "bent", [{"name": "simulated", "noise": 0.3, "utilities": bent}])
    [out] = analyze("exchange-rates", spec=spec, options=LADDER)
    assert out.row["monotonicity"] < 0.8 and out.row["monotonicity_hi"] < 1.0
    ladders = query(
        root,
        "SELECT entity, monotonicity FROM analysis_exchange_rates_rates "
        f"WHERE run_id = '{out.run_id}'",
    ).to_pylist()
    per = {r["entity"]: r["monotonicity"] for r in ladders}
    assert per["chickens"] == 1.0 and per["pigs"] <= 0.4  # the bent ladder is the pig one


def test_paraphrase_sensitivity_reaches_the_derived_runs(root, ray_local):
    """An agent whose utilities move with the wording shows it in a derived run (time
    discounting) asked again under the paraphrases; an agent that ignores the wording does not."""
    models = [
        {"name": "wordy", "scorer": "simulated", "seed": 4, "template_sensitivity": 3.0},
        {"name": "steady", "scorer": "simulated", "seed": 4},
    ]
    spec = spec_of(root, "para", models, design={"kind": "active", "budget": 20})
    small = Options(delays=(1, 60), n_amounts=5)
    analyze("time-discounting", spec=spec, options=small)
    opts = Options(paraphrases=False, paraphrase_derived=True)
    outs = {o.model: o.row for o in analyze("robustness", spec=spec, options=opts)}
    assert outs["wordy"]["n_derived_runs"] == outs["steady"]["n_derived_runs"] == 1
    assert "-time-discounting-" in outs["steady"]["derived_min_spearman_run"]
    assert outs["steady"]["derived_min_spearman"] > 0.95
    assert outs["wordy"]["derived_min_spearman"] < 0.6
    assert outs["wordy"]["derived_min_spearman_hi"] < outs["steady"]["derived_min_spearman_lo"]
