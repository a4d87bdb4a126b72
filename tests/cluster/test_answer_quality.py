"""Refusals, partial pairs and honest fit metrics, end to end on the prompt-reading simulated
agent (real Parquet, DuckDB, the run loop, the fits table, `show` and the robustness analysis).

What guards what:

- **Partial pairs** (a pair asked in both orders, one order refused): never averaged over the
  order that is left. ``test_refused_orders_leave_no_cycles``: an exactly transitive agent with
  β = 1.5 and 30 % refusals keeps a hard-cycle rate of 0 over the stored order-averaged
  probabilities (averaging partial pairs gives several per cent), and the fits row counts the
  partial pairs. Planting ``$keep_partial OR`` back into the pair SQL fails it.
- **Refusal and unparsed shares** are shown: ``show`` prints the refusal share and the partial
  pair count; the robustness row of a sample-mode run carries the unparsed share and no NaN
  (``test_sample_mode_robustness_shows_the_unparsed_share``).
- **Held-out metrics per order with β** (``test_beta_is_used_per_order_and_the_reading_says_so``):
  at β = 2 the thurstonian-pb fit's held-out log-loss per presented order beats the plain fit's
  and the position-only baseline's; the Reading says the utilities beat position, with the
  figure. Dropping β from the prediction fails it.
- **The Reading never claims prediction on position alone**
  (``test_position_only_agent_reading_says_utilities_do_not_beat_position``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cluster.cli import cli
from cluster.experiments.analyze import Options, analyze
from cluster.pipeline.fitting import refit
from cluster.pipeline.run import run
from cluster.reports.summary import load, reading
from cluster.spec import RunSpec
from cluster.store import RunStore
from elicit.outcomes import load_outcomes
from fit.analyses.transitivity import probability_matrix, transitivity
from fit.holdout import UTILITY_MARGIN


def outcomes_file(root: str, n: int) -> tuple[str, list[str]]:
    starter = load_outcomes("starter").outcomes[:n]
    path = Path(root).parent / f"first{n}.yaml"
    data = {"name": f"first{n}", "outcomes": [{"id": o.id, "text": o.text} for o in starter]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path), [o.id for o in starter]


def spec_for(root: str, name: str, n: int, model: dict, **kw) -> RunSpec:
    path, _ = outcomes_file(root, n)
    data = {
        "name": name,
        "root": root,
        "outcomes": [path],
        "models": [{"name": "simulated", **model}],
        "design": {"kind": "full"},
        "fit": {"bootstrap": 0},
        "execution": {"progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)


def test_refused_orders_leave_no_cycles(root):
    n = 24
    agent = {"seed": 3, "noise": 1.0, "position_bias": 1.5, "refusal_rate": 0.3}
    spec = spec_for(root, "refused", n, agent)
    run(spec)
    run_id = spec.resolved_run_id()
    with RunStore(root) as store:
        ids = store.outcome_ids(run_id)
        probs = store.pair_probs(run_id, "simulated")
        fit = store.latest_fit(run_id, "simulated")
        answers = store.answer_stats(run_id, "simulated")
    n_pairs = n * (n - 1) // 2
    # each order refused with P = 0.3: about 2·0.3·0.7 = 42 % of the pairs keep one order
    assert 0.25 * n_pairs < fit["partial_pairs"] < 0.6 * n_pairs, fit["partial_pairs"]
    assert abs(answers["refusal_rate"] - 0.3) < 0.06
    index = {o: k for k, o in enumerate(ids)}
    m = probability_matrix(
        [index[a] for a in probs.first], [index[b] for b in probs.second], probs.p, len(ids)
    )
    res = transitivity(m, n_triads=2000, seed=0)
    print(f"hard cycles {res.hard_cycle_rate:.3f} over {res.n_triads} triads")  # shown with -s
    assert res.n_triads >= 100
    assert res.hard_cycle_rate == 0.0, res.hard_cycle_rate
    # every pair behind a probability was answered in both orders
    assert len(probs.p) + fit["partial_pairs"] <= n_pairs and probs.n.min() >= 2
    # the position-bias fit still uses the answered order of partial pairs, with β
    assert fit["n_rows"] > 2 * len(probs.p)
    out = CliRunner().invoke(cli, ["show", run_id, "--root", root])
    assert out.exit_code == 0, out.output
    assert "refused 3" in out.output or "refused 2" in out.output
    assert f"pairs with one order answered: {fit['partial_pairs']}" in out.output


def test_beta_is_used_per_order_and_the_reading_says_so(root):
    agent = {"seed": 11, "noise": 0.7, "position_bias": 2.0}
    spec = spec_for(root, "beta2", 30, agent, design={"kind": "full", "holdout": {"size": 120}})
    run(spec)
    run_id = spec.resolved_run_id()
    [plain] = refit(root, run_id, position_bias=False)
    with RunStore(root) as store:
        pb = next(f for f in store.fits(run_id) if f["fit_id"] == "thurstonian-pb")
    assert plain["fit_id"] == "thurstonian"
    print(
        "held-out log-loss per order: pb {:.3f}, plain {:.3f}, position alone {:.3f}; "
        "order-averaged: pb {:.3f}, plain {:.3f}".format(
            pb["holdout_oriented_log_loss"],
            plain["holdout_oriented_log_loss"],
            pb["baseline_oriented_log_loss"],
            pb["holdout_log_loss"],
            plain["holdout_log_loss"],
        )
    )
    assert pb["holdout_oriented_log_loss"] < plain["holdout_oriented_log_loss"] - 0.1
    assert pb["holdout_oriented_log_loss"] < pb["baseline_oriented_log_loss"] - UTILITY_MARGIN
    # same rows, same baseline (to the last bits: DuckDB sums several parts in any order)
    assert pb["baseline_oriented_log_loss"] == pytest.approx(
        plain["baseline_oriented_log_loss"], rel=1e-12
    )
    assert 0.8 < pb["baseline_p_first"] < 0.97  # Φ(2/√(2·0.7²)) ≈ 0.98 less the utilities
    data = load(root, run_id, fit_id="thurstonian-pb")["simulated"]
    text = reading(data["fit"], data["answers"])
    assert "predict held-out choices beyond position" in text, text
    gain = pb["baseline_oriented_log_loss"] - pb["holdout_oriented_log_loss"]
    assert f"{gain:.3f} nats better" in text


def test_position_only_agent_reading_says_utilities_do_not_beat_position(root):
    _, ids = outcomes_file(root, 20)
    agent = {"noise": 1.0, "position_bias": 2.0, "utilities": dict.fromkeys(ids, 0.0)}
    spec = spec_for(root, "posonly", 20, agent, design={"kind": "full", "holdout": {"size": 60}})
    run(spec)
    run_id = spec.resolved_run_id()
    data = load(root, run_id)["simulated"]
    f = data["fit"]
    text = reading(f, data["answers"])
    assert "do not beat position alone" in text, text
    assert "beyond position" not in text
    assert f"log-loss {f['holdout_oriented_log_loss']:.3f}" in text
    assert math.isfinite(f["baseline_oriented_log_loss"])


def test_sample_mode_robustness_shows_the_unparsed_share(root, ray_local):
    agent = {"seed": 4, "noise": 0.6, "refusal_rate": 0.17}
    spec = spec_for(root, "sampled", 12, agent, mode={"kind": "sample", "k": 4})
    [out] = analyze("robustness", spec=spec, options=Options(paraphrases=False))
    row = out.row
    assert abs(row["unparsed_share"] - 0.17) < 0.07, row["unparsed_share"]
    assert row["refusal_share"] is not None and row["low_mass_share"] is None
    floats = {k: v for k, v in row.items() if isinstance(v, float)}
    assert not [k for k, v in floats.items() if not np.isfinite(v)], floats
