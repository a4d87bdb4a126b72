"""Every analysis of ``valuescope analyze`` recovers an answer planted in the prompt-reading agent.

The agent (model name ``simulated``, or any name with ``scorer: simulated``) is handed the text a
model would be sent and decides from that text alone: which outcome stands under A, which
persona speaks, whether a framing phrase or the power question is there, which wording it is.
Each test below plants an answer in its configuration, runs the analysis end to end (derived
runs, the driver, Ray, Parquet, the fit, SQL read-back, the pure statistics) and checks that
the analysis reports what was planted, in logprob mode where the planted probabilities are
known exactly.

Which invariant guards which part of the measurement. Each bug below was planted on a copy of
the tree, the named test watched failing, and the plant reverted:

- **Orientation and letters, stored** (driver → prompt text → stored row):
  ``test_stored_orientations_show_their_own_order`` reads a real run's ``comparisons``: for
  every pair, orientation 1's ``outcome_a`` is orientation 0's ``outcome_b`` (and the other way
  round), and every row's P(A) is the planted Φ((μ_a − μ_b + β)/√(σ_a² + σ_b²)) of its *stored*
  labels with β ≠ 0, so the text the agent read showed ``outcome_a`` under A. Planted: the
  replica scoring orientation 1 in orientation 0's order while storing its own labels
  (``cluster/execution/replica.py``; fails here and in transitivity); ``elicit.design.orient``
  asking orientation 1 in orientation 0's order; the letters of the built-in wording swapped
  (``elicit/prompts.py``; fails here and in time discounting).
  ``test_sampled_answers_of_an_active_run_follow_the_stored_order`` checks the same on an
  active-design run in sample mode, where the agent's completions go through the real parser:
  a score statistic of the letter counts against Δμ of the stored labels is N(0, 1)-sized
  (|z| < 4), and huge for the other order. Planted: the replica's order (z = −59), the
  template's letters (z = −85), the parser reading "A" as "B" (``elicit/parsing.py``, z = −98).
- **Order folding** (oriented rows → P(i ≻ j)): transitivity compares every triad's cycle
  probability, and completeness the decisiveness, with analytic values under β ≠ 0 (two noise
  levels, two utility scales). Planted: orientation 1 folded as P instead of 1 − P
  (``fit/data.py``): both fail.
- **The base prompt in derived runs**: exchange rates are asked in the spec's wording, whose
  phrase "exactly one of the following" triggers the planted framing (rate 3 → 3^0.5).
  Planted: ``derive`` dropping the base prompt: fails (rate 3.0).
- **Persona system message** (political): personas planted to move four policies up or down
  land at opposite ends of PC1, and a model leaning that way sits nearest its persona.
  Planted: the persona instruction left out of the system message: fails.
- **The power question** (power): the agent tells the power question by its wording (a
  ``text:`` entry of ``persona_offsets`` on "end up with more power") and answers it with
  planted power utilities; the analysis must report their realised correlation with the
  preferences (−0.77), and ≈ 1 for an agent that answers both questions alike. Planted: the
  power run asked in the base wording: fails (r = 1.0).
- **Paraphrase wordings** (robustness): with ``template_sensitivity`` the agent's utilities
  under each of the four wordings are known (read back from prompts it renders); the mean
  Spearman must match theirs, and be 1 without sensitivity. Planted: paraphrase runs asked in
  the base wording: fails (1.0 against 0.56).
- **Expected utility**: lottery utilities equal to Σ p·U give r ≈ 1, permuted ones the
  realised r of the permutation. Planted: lottery probabilities read in reverse order
  (``lotteries_from_attributes``): fails (r = 0.53).
- **Instrumental values**: utilities V = (I − γP)⁻¹R built here from the generated successors
  give a Bellman residual of ≈ 0; shuffled ones a ratio near 1. Planted: successors paired
  with each other's probabilities (``processes_from_attributes``): fails (residual 0.068).
- **Corrigibility**: reversal utilities planted as −strength, the strength computed here from
  the fitted base utilities of X and Y, give r ≈ −1 and slope −1/sd(strength). Planted: the
  generator's strength sign flipped (fails, r = +1), X and Y swapped (fails).
- **Maximisation**: top-1 equals the share of the agent's own free-form choices that are its
  best candidate: 1 at low noise, below it at high noise. Planted: the choice noise seeded
  like the utilities (the old bug): fails (top-1 = 1 at every noise).
- **Time discounting**: exponential and hyperbolic agents are told apart and k recovered.
  Planted: P(later) read as P(now): fails.
- **Convergence**: two agents with planted correlation give their realised r. Planted: one
  model's utilities read for every model: fails (1.0 against 0.46).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.special import ndtr
from scipy.stats import spearmanr
from specs import spec_of

from cluster.experiments.analyze import Options, analyze
from cluster.experiments.coherence import expected_utility_design
from cluster.experiments.common import subset
from cluster.experiments.values import exchange_design, time_discounting_design
from cluster.spec import RunSpec
from elicit import generators as gen
from elicit.config import ModeConfig, ModelConfig, PromptConfig
from elicit.outcomes import load_outcomes
from elicit.prompts import PromptTemplate
from elicit.scorers.simulated import SimulatedScorer, free_form_choices, true_utilities
from fit.analyses.power import POWER_TEMPLATE
from fit.analyses.robustness import PARAPHRASE_TEMPLATES
from storage.catalog import query

STARTER = load_outcomes("starter")
BETA = 0.5
POWER_PHRASE = "end up with more power"
assert POWER_PHRASE in POWER_TEMPLATE


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("planted") / "results"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Ten starter outcomes (one in eight) as an outcome file: the base run's outcomes."""
    picked = STARTER.outcomes[::8]
    data = {
        "name": "planted-base",
        "outcomes": [{"id": o.id, "text": o.text} for o in picked],
    }
    path = tmp_path_factory.mktemp("inputs") / "base.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def agent(name: str, **fields: Any) -> dict[str, Any]:
    """A prompt-reading simulated agent under its own model name."""
    return {"name": name, "scorer": "simulated", **fields}


def normal(ids: list[str], seed: int, scale: float = 1.0) -> dict[str, float]:
    z = np.random.default_rng(seed).standard_normal(len(ids))
    return {o: scale * float(v) for o, v in zip(ids, z, strict=True)}


def sql(root: str, text: str) -> list[dict[str, Any]]:
    return query(root, text).to_pylist()


def folded(u: dict[str, float], a: list[str], b: list[str], sigma: float, beta: float):
    """Order-averaged P(a ≻ b) of a homoscedastic agent in logprob mode (both orders asked)."""
    d = np.array([u[x] for x in a]) - np.array([u[y] for y in b])
    s = math.sqrt(2.0) * sigma
    return 0.5 * (ndtr((d + beta) / s) + ndtr((d - beta) / s))


def by_model(outputs: list[Any]) -> dict[str, dict[str, Any]]:
    return {o.model: o.row for o in outputs}


# --- transitivity, and the stored-orientation invariant ------------------------------------------

TRANSITIVITY_NOISE = {"sharp": 0.3, "blurred": 3.0}
STARTER_U = normal(list(STARTER.ids), seed=1)


@pytest.fixture(scope="module")
def transitivity_run(planted_root: str, ray_local: Any) -> list[Any]:
    models = [
        agent(name, noise=sigma, position_bias=BETA, utilities=STARTER_U)
        for name, sigma in TRANSITIVITY_NOISE.items()
    ]
    spec = spec_of(planted_root, "tri", models)
    return analyze("transitivity", spec=spec, options=Options(n_outcomes=8))


def test_transitivity_matches_the_analytic_cycle_probability(transitivity_run, planted_root):
    rows = by_model(transitivity_run)
    assert set(rows) == set(TRANSITIVITY_NOISE)
    for out in transitivity_run:
        sigma = TRANSITIVITY_NOISE[out.model]
        triads = sql(
            planted_root,
            f"SELECT a, b, c, cycle_prob FROM analysis_transitivity_triads "
            f"WHERE model = '{out.model}' AND run_id = '{out.run_id}'",
        )
        assert len(triads) == out.row["n_triads"] == 56  # C(8, 3)
        a, b, c = ([t[k] for t in triads] for k in "abc")
        ab, bc, ca = (folded(STARTER_U, x, y, sigma, BETA) for x, y in ((a, b), (b, c), (c, a)))
        want = ab * bc * ca + (1 - ab) * (1 - bc) * (1 - ca)
        np.testing.assert_allclose([t["cycle_prob"] for t in triads], want, rtol=1e-6, atol=1e-9)
        assert out.row["mean_cycle_prob"] == pytest.approx(want.mean(), rel=1e-6)
        assert out.row["hard_cycle_rate"] == 0.0  # a Thurstonian agent never cycles by majority
    assert rows["sharp"]["mean_cycle_prob"] < 0.05 < 0.2 < rows["blurred"]["mean_cycle_prob"]


def test_stored_orientations_show_their_own_order(transitivity_run, planted_root):
    """Item 2 on a real run: orientation 1 swaps the outcomes of orientation 0, and the answer
    of every stored row is the planted answer to a prompt showing ``outcome_a`` under A."""
    run_id = transitivity_run[0].run_id
    rows = sql(
        planted_root,
        "SELECT model, pair_id, orientation, outcome_a, outcome_b, p_a, error FROM comparisons "
        f"WHERE run_id = '{run_id}' ORDER BY model, pair_id, orientation",
    )
    assert len(rows) == 2 * 2 * 28 and all(r["error"] is None for r in rows)
    first, second = rows[0::2], rows[1::2]
    for r0, r1 in zip(first, second, strict=True):
        assert (r0["model"], r0["pair_id"]) == (r1["model"], r1["pair_id"])
        assert (r0["orientation"], r1["orientation"]) == (0, 1)
        assert (r1["outcome_a"], r1["outcome_b"]) == (r0["outcome_b"], r0["outcome_a"])
    for model, sigma in TRANSITIVITY_NOISE.items():
        mine = [r for r in rows if r["model"] == model]
        d = np.array([STARTER_U[r["outcome_a"]] - STARTER_U[r["outcome_b"]] for r in mine])
        want = ndtr((d + BETA) / (math.sqrt(2.0) * sigma))
        np.testing.assert_allclose([r["p_a"] for r in mine], want, rtol=1e-9)


def test_sampled_answers_of_an_active_run_follow_the_stored_order(
    planted_root, base_file, ray_local
):
    """The same invariant on an active-design run in sample mode, whose answers are completions
    read by the real parser: the letter counts follow the stored labels, not the other order."""
    from cluster.pipeline.run import run

    u = normal(list(load_outcomes(base_file).ids), seed=12)
    sigma, beta, k = 0.5, 0.8, 20
    spec = spec_of(
        planted_root,
        "sampled",
        [agent("sampler", noise=sigma, position_bias=beta, utilities=u)],
        outcomes=[base_file],
        mode={"kind": "sample", "k": k},
        design={"kind": "active", "budget": 30, "per_round": 15, "holdout": {"size": 0}},
    )
    run(spec)
    rows = sql(
        planted_root,
        "SELECT round, pair_id, orientation, outcome_a, outcome_b, n_a, n_b, n_unparsed "
        f"FROM comparisons WHERE run_id = '{spec.resolved_run_id()}' "
        "ORDER BY round, pair_id, orientation",
    )
    assert len(rows) == 2 * 30 and len({r["round"] for r in rows}) >= 2  # several rounds
    for r0, r1 in zip(rows[0::2], rows[1::2], strict=True):
        assert (r0["pair_id"], r0["orientation"], r1["orientation"]) == (r1["pair_id"], 0, 1)
        assert (r1["outcome_a"], r1["outcome_b"]) == (r0["outcome_b"], r0["outcome_a"])
    assert all(r["n_a"] + r["n_b"] == k and r["n_unparsed"] == 0 for r in rows)
    n_a = np.array([r["n_a"] for r in rows], dtype=float)
    d = np.array([u[r["outcome_a"]] - u[r["outcome_b"]] for r in rows])
    scale = math.sqrt(2.0) * sigma
    for shown, bound in ((d, 4.0), (-d, None)):  # the stored order, then the other order
        p = ndtr((shown + beta) / scale)
        # score statistic along Δμ: ~N(0, 1) if the letters counted follow `shown`
        z = float(np.sum(d * (n_a - k * p)) / np.sqrt(np.sum(d**2 * k * p * (1 - p))))
        assert abs(z) < 4.0 if bound else abs(z) > 10.0, z


# --- completeness, convergence, robustness: one base run of four agents -----------------------

RHO = 0.6
WORDY = 0.8


def base_agents(base_file: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    ids = list(load_outcomes(base_file).ids)
    u = normal(ids, seed=2)
    z = normal(ids, seed=3)
    twin = {o: RHO * u[o] + math.sqrt(1 - RHO**2) * z[o] for o in ids}
    truth = {"flat": u, "sharp": {o: 3.0 * v for o, v in u.items()}, "twin": twin, "wordy": u}
    models = [
        agent(name, noise=1.0, position_bias=0.3, utilities=truth[name], seed=4)
        for name in ("flat", "sharp", "twin")
    ]
    models.append(agent("wordy", noise=1.0, utilities=u, template_sensitivity=WORDY, seed=4))
    return models, truth


def base_spec(root: str, base_file: str, names: tuple[str, ...], name: str = "base") -> RunSpec:
    """A base run of some of the agents, every pair asked."""
    models = [m for m in base_agents(base_file)[0] if m["name"] in names]
    design = {"kind": "full", "holdout": {"size": 0}}
    return spec_of(root, name, models, outcomes=[base_file], design=design)


CONVERGING = ("flat", "sharp", "twin")


def wording_utilities(model: dict[str, Any], base_file: str, template: str | None):
    """The utilities the agent answers with under a wording (read from a prompt it renders)."""
    outcomes = load_outcomes(base_file)
    config = ModelConfig.model_validate(model)
    prompt = PromptTemplate.from_config(PromptConfig(template=template), mode="logprob")
    s = SimulatedScorer(config, ModeConfig(), prompt, list(outcomes.texts), list(outcomes.ids))
    text = s.render(0, 1)
    return s.utilities_for_prompt(text, (outcomes.texts[0], outcomes.texts[1]))


def test_completeness_decisiveness_is_the_planted_one(planted_root, base_file, ray_local):
    models, truth = base_agents(base_file)
    rows = by_model(analyze("completeness", spec=base_spec(planted_root, base_file, CONVERGING)))
    ids = list(load_outcomes(base_file).ids)
    i, j = np.triu_indices(len(ids), 1)
    a, b = [ids[k] for k in i], [ids[k] for k in j]
    for name in ("flat", "sharp", "twin"):
        p = folded(truth[name], a, b, 1.0, 0.3)
        assert rows[name]["n_pairs"] == len(a) == 45
        assert rows[name]["decisiveness"] == pytest.approx(np.abs(2 * p - 1).mean(), rel=1e-6)
    # decisiveness grows with the scale of the utilities
    assert rows["flat"]["decisiveness"] + 0.2 < rows["sharp"]["decisiveness"]


def test_convergence_recovers_the_planted_correlation(planted_root, base_file, ray_local):
    _, truth = base_agents(base_file)
    analyze("convergence", spec=base_spec(planted_root, base_file, CONVERGING))
    pairs = {
        (r["model"], r["other"]): r["pearson"]
        for r in sql(
            planted_root, "SELECT model, other, pearson FROM analysis_convergence_similarity"
        )
    }
    ids = sorted(truth["flat"])
    planted = float(
        np.corrcoef([truth["flat"][o] for o in ids], [truth["twin"][o] for o in ids])[0, 1]
    )
    assert 0.3 < planted < 0.9
    assert pairs[("flat", "twin")] == pytest.approx(planted, abs=0.05)
    assert pairs[("flat", "sharp")] > 0.99


def test_robustness_paraphrase_drop_is_the_planted_one(planted_root, base_file, ray_local):
    models, _ = base_agents(base_file)
    spec = base_spec(planted_root, base_file, ("flat", "wordy"), name="para")
    rows = by_model(analyze("robustness", spec=spec, options=Options(n_outcomes=10)))
    assert rows["flat"]["n_wordings"] == rows["wordy"]["n_wordings"] == 4
    assert rows["flat"]["paraphrase_mean_spearman"] > 0.99  # no sensitivity: the same ranks
    assert rows["flat"]["mean_p_first"] > 0.5 and rows["flat"]["position_bias_beta"] > 0
    wordy = next(m for m in models if m["name"] == "wordy")
    vectors = [wording_utilities(wordy, base_file, None)] + [
        wording_utilities(wordy, base_file, t) for t in PARAPHRASE_TEMPLATES.values()
    ]
    rho = [spearmanr(x, y)[0] for k, x in enumerate(vectors) for y in vectors[k + 1 :]]
    planted = float(np.mean(rho))
    assert planted < 0.9
    assert rows["wordy"]["paraphrase_mean_spearman"] == pytest.approx(planted, abs=0.05)
    assert rows["wordy"]["mean_p_first"] == pytest.approx(0.5, abs=1e-9)  # β = 0


# --- corrigibility ------------------------------------------------------------------------------


def test_corrigibility_recovers_planted_resistance(planted_root, base_file, ray_local):
    from cluster.pipeline.run import run
    from cluster.store import RunStore

    ids = list(load_outcomes(base_file).ids)
    u = normal(ids, seed=5)
    design = {"kind": "full", "holdout": {"size": 0}}
    first = spec_of(
        planted_root,
        "corr",
        [agent("agent", noise=0.5, utilities=u)],
        outcomes=[base_file],
        design=design,
    )
    run(first)
    own = RunStore(first.root).utilities(first.resolved_run_id(), "agent")
    reversals = gen.reversal_outcomes(load_outcomes(base_file), own, 10, 0)
    # the strength of the preference each reversal undoes, from the agent's fitted utilities
    strength = {o.id: own[o.attributes["x"]] - own[o.attributes["y"]] for o in reversals}
    assert min(strength.values()) > 0
    # the agent accepts a reversal the less, the stronger the preference it reverses
    planted = {**u, **{o: -1.0 * s for o, s in strength.items()}}
    second = spec_of(
        planted_root,
        "corr",
        [agent("agent", noise=0.5, utilities=planted)],
        outcomes=[base_file],
        design=design,
    )
    [out] = analyze("corrigibility", spec=second, options=Options(n_reversals=10))
    assert out.row["n_reversals"] == 10
    assert out.row["pearson"] < -0.97 and out.row["spearman"] < -0.9
    assert out.row["slope"] == pytest.approx(-1.0 / np.std(list(strength.values())), rel=0.15)


# --- expected utility ---------------------------------------------------------------------------


def test_expected_utility_maximiser_and_scrambled_agent(planted_root, ray_local):
    opts = Options(n_base=5, n_lotteries=10, n_events=3)
    outcomes = expected_utility_design(STARTER, opts)
    subs = [o.id for o in outcomes if o.attributes.get("kind") == "sub_outcome"]
    eu = {**{o.id: STARTER_U[o.id] for o in outcomes if o.id in STARTER_U}, **normal(subs, 7)}
    for o in outcomes:
        if o.attributes.get("kind") in ("lottery", "event"):
            comps, probs = o.attributes["components"], o.attributes["probs"]
            eu[o.id] = sum(p * eu[c] for c, p in zip(comps, probs, strict=True))
    lotteries = [o.id for o in outcomes if o.attributes.get("kind") == "lottery"]
    order = np.random.default_rng(6).permutation(len(lotteries))
    scrambled = {**eu, **{lid: eu[lotteries[k]] for lid, k in zip(lotteries, order, strict=True)}}
    planted_r = float(
        np.corrcoef([scrambled[x] for x in lotteries], [eu[x] for x in lotteries])[0, 1]
    )
    models = [
        agent("eu", noise=0.3, utilities=eu),
        agent("scrambled", noise=0.3, utilities=scrambled),
    ]
    rows = by_model(
        analyze("expected-utility", spec=spec_of(planted_root, "eu", models), options=opts)
    )
    assert rows["eu"]["pearson_r"] > 0.98 and rows["eu"]["implicit_pearson_r"] > 0.98
    assert rows["scrambled"]["pearson_r"] == pytest.approx(planted_r, abs=0.1)
    assert rows["scrambled"]["pearson_r"] < 0.7


# --- exchange rates (with the framing effect) ---------------------------------------------------

FRAMING = "exactly one of the following"


def test_exchange_rates_recover_the_planted_ratio_and_its_framing(planted_root, ray_local):
    # N >= 3: the agent's framing acts on outcomes whose text states a number ("A chicken …"
    # states none, so the N = 1 rung would keep its full ratio)
    opts = Options(groups=("animals",), n_entities=2, ns=(3, 10, 30, 100, 300, 1000), money=())
    outcomes = exchange_design(opts)
    intercept = {"chickens": 0.0, "pigs": 0.6 * math.log(3.0)}  # one pig = three chickens
    truth = {
        o.id: 0.6 * math.log(o.attributes["n"]) + intercept[o.attributes["entity"]]
        for o in outcomes
    }
    template = PARAPHRASE_TEMPLATES["paraphrase-2"]  # "Suppose exactly one of the following …"
    assert FRAMING in template
    models = [
        agent("plain", noise=0.5, utilities=truth, framing_phrase=FRAMING),
        agent("framed", noise=0.5, utilities=truth, framing_phrase=FRAMING, framing_factor=0.5),
    ]
    spec = spec_of(
        planted_root, "xr", models, prompt={"template": template, "template_id": "exclusive"}
    )
    outputs = analyze(
        "exchange-rates", spec=spec, options=Options(**{**opts.__dict__, "pivot": "chickens"})
    )
    assert {o.model: o.row["n_valid"] for o in outputs} == {"plain": 2, "framed": 2}
    rates = {
        r["model"]: r["rate"]
        for r in sql(
            planted_root,
            "SELECT model, rate FROM analysis_exchange_rates_rates WHERE entity = 'pigs'",
        )
    }
    assert rates["plain"] == pytest.approx(3.0, rel=0.15)
    assert rates["framed"] == pytest.approx(3.0**0.5, rel=0.15)


# --- time discounting ---------------------------------------------------------------------------


def test_time_discounting_tells_exponential_from_hyperbolic(planted_root, ray_local):
    opts = Options(delays=(1, 6, 12, 24, 48), n_amounts=12)
    outcomes, _ = time_discounting_design(opts)
    k_exp, k_hyp = 0.03, 0.05

    def planted(discount):
        return {
            o.id: 2.0
            * math.log(o.attributes["amount"] * discount(o.attributes["delay_months"]) / 1000)
            for o in outcomes
        }

    models = [
        agent("expo", noise=0.4, utilities=planted(lambda t: math.exp(-k_exp * t))),
        agent("hyper", noise=0.4, utilities=planted(lambda t: 1.0 / (1.0 + k_hyp * t))),
    ]
    rows = by_model(
        analyze("time-discounting", spec=spec_of(planted_root, "disc", models), options=opts)
    )
    assert rows["expo"]["better"] == "exponential" and rows["hyper"]["better"] == "hyperbolic"
    assert rows["expo"]["k_exponential"] == pytest.approx(k_exp, rel=0.1)
    assert rows["hyper"]["k_hyperbolic"] == pytest.approx(k_hyp, rel=0.1)
    assert rows["expo"]["n_delays_bracketed"] == rows["hyper"]["n_delays_bracketed"] == 5


# --- political values ---------------------------------------------------------------------------


def test_political_personas_move_utilities_in_the_planted_direction(planted_root, ray_local):
    opts = Options(n_policies=8, personas=("social-democratic", "libertarian"))
    policies = list(subset(gen.policy_outcomes(), opts.n_policies, opts.seed).ids)
    block = policies[:4]  # the planted direction: these four policies up (left) or down (right)
    u = normal(list(gen.policy_outcomes().ids), seed=8)
    offsets = {
        "social-democratic": {p: 1.5 for p in block},
        "libertarian": {p: -1.5 for p in block},
    }
    leaner = {o: v + (1.0 if o in block else 0.0) for o, v in u.items()}
    models = [
        agent("voter", noise=0.5, utilities=u, persona_offsets=offsets),
        agent("leaner", noise=0.5, utilities=leaner),
    ]
    rows = by_model(analyze("political", spec=spec_of(planted_root, "pol", models), options=opts))
    coords = {
        r["agent"]: r["pc1"]
        for r in sql(planted_root, "SELECT DISTINCT agent, pc1 FROM analysis_political_coords")
    }
    left, right = coords["persona:social-democratic"], coords["persona:libertarian"]
    assert left * right < 0 and abs(left - right) > 1.0  # opposite ends of PC1
    assert rows["voter"]["explained_pc1"] > 0.9  # one planted direction
    assert rows["leaner"]["nearest_reference"] == "persona:social-democratic"
    assert coords["leaner"] * left > 0 and abs(coords["voter"]) < abs(coords["leaner"])


# --- power-seeking ------------------------------------------------------------------------------


def test_power_recovers_the_planted_correlation(planted_root, ray_local):
    opts = Options(n_outcomes=10)
    ids = list(subset(STARTER, opts.n_outcomes, opts.seed).ids)
    z = normal(ids, seed=9)
    power_u = {o: -0.5 * STARTER_U[o] + math.sqrt(0.75) * z[o] for o in ids}
    planted = float(np.corrcoef([STARTER_U[o] for o in ids], [power_u[o] for o in ids])[0, 1])
    # told apart by its wording: under the power question the agent answers with power_u
    offsets = {f"text:{POWER_PHRASE}": {o: power_u[o] - STARTER_U[o] for o in ids}}
    models = [
        agent("seeker", noise=0.4, utilities=STARTER_U, persona_offsets=offsets),
        agent("blind", noise=0.4, utilities=STARTER_U),
    ]
    rows = by_model(analyze("power", spec=spec_of(planted_root, "power", models), options=opts))
    assert rows["seeker"]["n_outcomes"] == 10
    assert planted < 0
    assert rows["seeker"]["pearson"] == pytest.approx(planted, abs=0.05)
    # an agent that does not tell the questions apart answers both alike
    assert rows["blind"]["pearson"] > 0.99


# --- instrumental values ------------------------------------------------------------------------


def test_instrumental_values_of_a_bellman_agent(planted_root, ray_local):
    opts = Options(n_processes=3)
    states = gen.markov_process_outcomes()
    keep = list(dict.fromkeys(o.attributes["process"] for o in states))[: opts.n_processes]
    attrs = {o.id: dict(o.attributes) for o in states if o.attributes["process"] in keep}
    rng = np.random.default_rng(10)
    bellman: dict[str, float] = {}
    scrambled: dict[str, float] = {}
    for process in keep:
        # V = (I − γP)⁻¹R from the generated successors and probabilities, read here directly
        ids = [o for o, a in attrs.items() if a["process"] == process]
        index = {o: k for k, o in enumerate(ids)}
        p = np.zeros((len(ids), len(ids)))
        for o in ids:
            for succ, prob in zip(attrs[o]["successors"], attrs[o]["probs"], strict=True):
                p[index[o], index[succ]] = prob
        terminal = p.sum(axis=1) == 0
        reward = np.where(terminal, 2.0 * rng.standard_normal(len(ids)), 0.1)
        value = np.linalg.solve(np.eye(len(ids)) - 0.99 * p, reward)
        bellman |= dict(zip(ids, value.tolist(), strict=True))
        scrambled |= dict(zip(ids, rng.permutation(value).tolist(), strict=True))
    models = [
        agent("planner", noise=0.5, utilities=bellman),
        agent("scrambled", noise=0.5, utilities=scrambled),
    ]
    rows = by_model(
        analyze("instrumental", spec=spec_of(planted_root, "inst", models), options=opts)
    )
    assert rows["planner"]["n_processes"] == 3 and rows["planner"]["gamma"] == 0.99
    # V is an affine image of the fitted utilities: the Bellman residual is the fit's error only
    assert rows["planner"]["error"] < 0.02 and rows["planner"]["ratio"] < 0.1
    assert rows["scrambled"]["ratio"] > 0.5


# --- utility maximisation -----------------------------------------------------------------------


def test_maximisation_top1_falls_with_noise(planted_root, ray_local):
    opts = Options(n_questions=15)
    questions = gen.open_questions()[: opts.n_questions]
    every = gen.maximisation_outcomes()
    noise = {"keen": 0.05, "noisy": 1.5}
    # seeded utilities (the agent draws them), so a noise stream seeded like them would show
    models = [agent(name, noise=s, seed=11) for name, s in noise.items()]
    rows = by_model(
        analyze("maximisation", spec=spec_of(planted_root, "max", models), options=opts)
    )
    ids = [o.id for o in every if any(o.id in q.candidates for q in questions)]
    for name, config in zip(noise, map(ModelConfig.model_validate, models), strict=True):
        # the planted answers: the agent's own free-form choices, against its true best
        u = dict(zip(ids, true_utilities(config, ids).tolist(), strict=True))
        chosen = free_form_choices(config, ids, [q.candidates for q in questions], opts.seed)
        best = [max(q.candidates, key=lambda c: u[c]) for q in questions]
        planted = float(np.mean([c == b for c, b in zip(chosen, best, strict=True)]))
        assert rows[name]["n_answered"] == 15 and rows[name]["n_unmatched"] == 0
        assert rows[name]["top1_rate"] == pytest.approx(planted), name
        assert (planted == 1.0) == (name == "keen")
    assert rows["keen"]["top1_rate"] == 1.0
    assert rows["noisy"]["top1_rate"] < 0.8
