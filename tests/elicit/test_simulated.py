"""The prompt-reading simulated agent: a planted answer that travels the path of a real model's.

Which invariant guards which part of the measurement:

- **Reading the answer** (scorer output → P(A), P(B)): ``test_answers_follow_the_shown_options``
  checks P(A) against Φ((μ_A − μ_B + β)/√(σ_A² + σ_B²)) computed here from the planted utilities
  of the outcome whose text stands under "Option A". A swap of P(A) and P(B) on the output path
  fails it (planted and watched).
- **Orientation** (query → text): ``test_each_orientation_shows_its_own_order`` reads every
  rendered prompt back and checks that orientation (a, b) shows a under A and (b, a) shows b under
  A, and that the two answers are complementary. Rendering orientation 1 in the order of
  orientation 0 fails it (planted in the agent's renderer and watched).
- **System message and persona** (spec → text): ``test_system_message_and_persona_reach_the_agent``
  puts a packaged persona and a free-text persona into the system message and checks their
  offsets in the answers. Dropping the system message (planted in ``PromptTemplate.from_config``
  and in ``chat_messages``) fails it.
- **Letters** (template → which option is A): ``test_answers_follow_the_shown_options`` on the
  built-in wording, and ``test_letters_come_from_the_labels`` on a wording whose labels are
  swapped. Swapping the letters of the built-in template fails the first (planted and watched).
- **Wording, framing, noise, refusals**: the configured effects act by the stated amounts.
- **Maximisation answers**: ``test_free_form_choices_miss_the_best_candidate_more_often_with_more_noise``
  (seeding the noise like the utilities, the old bug, fails it; planted and watched).
- **Bad input**: an agent that cannot be honoured is a one-line spec error naming field and value.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.special import ndtr

from elicit import generators as gen
from elicit.config import ModeConfig, ModelConfig, PromptConfig
from elicit.outcomes import load_outcomes
from elicit.prompts import PromptTemplate
from elicit.scorers import make_scorer
from elicit.scorers.base import QueryBatch
from elicit.scorers.reader import quantity, read_options
from elicit.scorers.simulated import (
    FastSimulatedScorer,
    SimulatedScorer,
    free_form_choices,
    true_utilities,
)
from fit.analyses.power import POWER_TEMPLATE
from fit.analyses.robustness import PARAPHRASE_TEMPLATES

STARTER = load_outcomes("starter")
TEXTS, IDS = STARTER.texts[:30], STARTER.ids[:30]


def both_orders(n: int) -> QueryBatch:
    """Every unordered pair of n outcomes, orientation 0 (i < j first) then orientation 1."""
    i, j = np.triu_indices(n, 1)
    m = len(i)
    return QueryBatch(
        pair_id=np.concatenate([np.arange(m), np.arange(m)]),
        a_idx=np.concatenate([i, j]),
        b_idx=np.concatenate([j, i]),
    )


def agent(
    mode: ModeConfig | None = None,
    texts: list[str] = TEXTS,
    ids: list[str] = IDS,
    prompt: PromptConfig | None = None,
    **fields: object,
) -> SimulatedScorer:
    model = ModelConfig(name="simulated", **{"seed": 5, "noise": 0.7, **fields})  # type: ignore[arg-type]
    kind = (mode or ModeConfig()).kind
    template = PromptTemplate.from_config(prompt or PromptConfig(), mode=kind)
    scorer = make_scorer(model, mode or ModeConfig(), template, texts, ids)
    assert isinstance(scorer, SimulatedScorer)
    return scorer


def expected(s: FastSimulatedScorer, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    scale = np.sqrt(s.sigma[a] ** 2 + s.sigma[b] ** 2)
    return ndtr((u[a] - u[b] + s.model.position_bias) / scale)


def test_answers_follow_the_shown_options() -> None:
    s = agent(position_bias=0.4)
    batch = both_orders(len(TEXTS))
    out = s.score(batch)
    assert out.error == [None] * len(batch)
    # the outcome under "Option A" in the text is the query's a_idx (read back here by hand)
    for a, b in zip(batch.a_idx[:40], batch.b_idx[:40], strict=True):
        text = s.render(int(a), int(b))
        shown_a = text.split("Option A:\n", 1)[1].split("\n", 1)[0]
        shown_b = text.split("Option B:\n", 1)[1].split("\n", 1)[0]
        assert (shown_a, shown_b) == (TEXTS[a], TEXTS[b])
    want = expected(s, batch.a_idx, batch.b_idx, s.utilities)
    np.testing.assert_allclose(out.p_a, want, rtol=1e-12)
    np.testing.assert_allclose(out.p_b, 1 - want, rtol=1e-12)
    np.testing.assert_allclose(np.exp(out.lp_a), want, rtol=1e-12)
    np.testing.assert_allclose(out.mass, 1.0)


def test_each_orientation_shows_its_own_order() -> None:
    s = agent()
    batch = both_orders(len(TEXTS))
    for a, b in zip(batch.a_idx.tolist(), batch.b_idx.tolist(), strict=True):
        reading = read_options(s.render(a, b), TEXTS[a], TEXTS[b])
        assert reading.error is None and not reading.swapped, (a, b)
    out = s.score(batch)
    m = len(batch) // 2
    # with β = 0 the answer to (b, a) is the complement of the answer to (a, b)
    np.testing.assert_allclose(out.p_a[:m] + out.p_a[m:], 1.0, rtol=1e-12)
    differs = np.abs(out.p_a[:m] - 0.5) > 0.05
    assert differs.mean() > 0.5  # the check above is not met by answers of 0.5


def test_fast_agent_gives_the_same_measurements_without_prompt_effects() -> None:
    batch = both_orders(len(TEXTS))
    for mode in (ModeConfig(), ModeConfig(kind="sample", k=7), ModeConfig(kind="reasoning", k=3)):
        fields = {"label_noise": 0.4, "refusal_rate": 0.2, "position_bias": 0.6}
        reading = agent(mode, **fields).score(batch)  # type: ignore[arg-type]
        model = ModelConfig(name="simulated-fast", seed=5, noise=0.7, **fields)  # type: ignore[arg-type]
        template = PromptTemplate.from_config(PromptConfig(), mode=mode.kind)
        fast = make_scorer(model, mode, template, TEXTS, IDS)
        assert type(fast) is FastSimulatedScorer
        indexed = fast.score(batch)
        np.testing.assert_array_equal(reading.p_a, indexed.p_a)
        if mode.kind != "logprob":
            np.testing.assert_array_equal(reading.n_unparsed, indexed.n_unparsed)


def test_system_message_and_persona_reach_the_agent() -> None:
    persona = gen.political_personas()[0]
    offsets = {persona.id: {IDS[0]: 3.0}, "text:loves the sea": {"wealth-*": -2.0}}
    batch = QueryBatch(np.arange(4), np.array([0, 2, 1, 9]), np.array([2, 0, 9, 1]))
    plain = agent(persona_offsets=offsets).score(batch)
    system = f"You are a helpful assistant.\n\n{persona.instruction()} You loves the sea."
    s = agent(persona_offsets=offsets, prompt=PromptConfig(system=system))
    spoken = s.score(batch)
    u = s.utilities.copy()
    np.testing.assert_allclose(plain.p_a, expected(s, batch.a_idx, batch.b_idx, u))
    u[0] += 3.0
    u[[i for i, o in enumerate(IDS) if o.startswith("wealth-")]] -= 2.0
    np.testing.assert_allclose(spoken.p_a, expected(s, batch.a_idx, batch.b_idx, u))
    assert np.all(np.abs(spoken.p_a - plain.p_a) > 1e-3)
    # folded into the user turn for a model without a system role: still read
    folded = agent(persona_offsets=offsets, system_role=False, prompt=PromptConfig(system=system))
    assert "<|system|>" not in folded.render(0, 2)
    np.testing.assert_allclose(folded.score(batch).p_a, spoken.p_a)


def test_letters_come_from_the_labels() -> None:
    swapped = "Option B:\n{option_a}\n\nOption A:\n{option_b}\n\nWhich? Reply A or B."
    s = agent(prompt=PromptConfig(template=swapped))
    batch = both_orders(len(TEXTS))
    out = s.score(batch)
    # the text puts a_idx under the label B, so P(A) is about b_idx
    np.testing.assert_allclose(out.p_a, expected(s, batch.b_idx, batch.a_idx, s.utilities))


@pytest.mark.parametrize(
    "template", [*PARAPHRASE_TEMPLATES.values(), POWER_TEMPLATE, "{option_a} or {option_b}?"]
)
def test_every_packaged_wording_is_read_in_order(template: str) -> None:
    s = agent(prompt=PromptConfig(template=template))
    batch = both_orders(len(TEXTS))
    out = s.score(batch)
    assert out.error == [None] * len(batch)
    np.testing.assert_allclose(out.p_a, expected(s, batch.a_idx, batch.b_idx, s.utilities))


def test_a_prompt_that_cannot_be_read_is_an_error_row() -> None:
    twice_a = "Option A: {option_a}\nOption A: {option_b}\nA or B?"
    out = agent(prompt=PromptConfig(template=twice_a)).score(both_orders(4))
    assert all(e is not None and "both options are labelled A" in e for e in out.error)
    assert np.isnan(out.p_a).all() and np.isnan(out.mass).all()


def test_option_contained_in_the_other_is_found_apart() -> None:
    texts = ["5 people are cured.", "15 people are cured.", "It rains."]
    s = agent(texts=texts, ids=["x5", "x15", "rain"])
    batch = both_orders(3)
    out = s.score(batch)
    assert out.error == [None] * len(batch)
    np.testing.assert_allclose(out.p_a, expected(s, batch.a_idx, batch.b_idx, s.utilities))


def test_wording_sensitivity_has_the_stated_size() -> None:
    texts = [f"Outcome number {k} happens." for k in range(400)]
    ids = [f"o{k}" for k in range(400)]
    batch = QueryBatch(np.arange(3), np.array([0, 1, 2]), np.array([1, 2, 0]))
    per_wording = []
    for template in (None, *PARAPHRASE_TEMPLATES.values()):
        s = agent(texts=texts, ids=ids, template_sensitivity=0.5)
        prompt = s.render(0, 1) if template is None else None
        if template is not None:
            s = agent(
                texts=texts,
                ids=ids,
                template_sensitivity=0.5,
                prompt=PromptConfig(template=template),
            )
            prompt = s.render(0, 1)
        assert prompt is not None
        per_wording.append(s.utilities_for_prompt(prompt, (texts[0], texts[1])) - s.utilities)
        # another orientation of the same wording is the same wording
        again = s.utilities_for_prompt(s.render(5, 3), (texts[5], texts[3])) - s.utilities
        np.testing.assert_array_equal(again, per_wording[-1])
    shifts = np.stack(per_wording)
    assert np.all(np.abs(shifts.std(axis=1) - 0.5) < 0.06)
    assert abs(np.corrcoef(shifts[0], shifts[1])[0, 1]) < 0.2  # each wording its own draw
    none = agent(texts=texts, ids=ids).score(batch).p_a
    para = agent(
        texts=texts, ids=ids, prompt=PromptConfig(template=PARAPHRASE_TEMPLATES["paraphrase-1"])
    )
    np.testing.assert_array_equal(para.score(batch).p_a, none)  # sensitivity 0: wording is moot


def test_framing_shrinks_exchange_ratios_by_the_factor() -> None:
    ladder = gen.exchange_outcomes(
        [
            {"name": "cats", "one": "cat", "many": "cats"},
            {"name": "dogs", "one": "dog", "many": "dogs"},
        ],
        "{n} {entity} find a home.",
        ns=(1, 10, 100),
        measure="homes",
    )
    n = np.array([o.attributes["n"] for o in ladder], dtype=float)
    entity = np.array([o.attributes["entity"] == "cats" for o in ladder], dtype=float)
    truth = 1.5 * entity + 0.8 * np.log(n)  # cats are worth e^(1.5/0.8) dogs
    utilities = dict(zip(ladder.ids, truth.tolist(), strict=True))
    framed = PromptConfig(template=PARAPHRASE_TEMPLATES["paraphrase-2"])  # "exactly one of …"
    fields = {
        "utilities": utilities,
        "framing_phrase": "exactly one of the following",
        "framing_factor": 0.4,
    }
    assert [quantity(t) for t in ladder.texts] == n.tolist()
    s = agent(texts=ladder.texts, ids=ladder.ids, prompt=framed, **fields)
    text = s.render(0, 3)
    u = s.utilities_for_prompt(text, (ladder.texts[0], ladder.texts[3]))
    cats, dogs = entity == 1, entity == 0
    np.testing.assert_allclose(u[cats] - u[dogs], 0.4 * 1.5)  # entity gap at equal N shrinks
    np.testing.assert_allclose(np.diff(u[cats]), np.diff(truth[cats]))  # slope in log N kept
    plain = agent(texts=ladder.texts, ids=ladder.ids, **fields)
    np.testing.assert_allclose(
        plain.utilities_for_prompt(plain.render(0, 3), (ladder.texts[0], ladder.texts[3])), truth
    )


def test_heteroscedastic_noise() -> None:
    given = agent(noise_by_outcome={IDS[0]: 0.1, IDS[1]: 3.0})
    assert given.sigma[0] == 0.1 and given.sigma[1] == 3.0 and given.sigma[2] == 0.7
    texts = [f"Outcome number {k} happens." for k in range(2000)]
    spread = agent(texts=texts, ids=[f"o{k}" for k in range(2000)], noise_spread=0.5)
    assert abs(np.log(spread.sigma).std() - 0.5) < 0.03
    assert abs(np.median(spread.sigma) - 0.7) < 0.05


def test_refusals_in_every_mode() -> None:
    batch = both_orders(len(TEXTS))
    out = agent(refusal_rate=0.3).score(batch)
    refused = out.mass == 0
    assert 0.25 < refused.mean() < 0.35
    assert np.isnan(out.p_a[refused]).all() and np.isfinite(out.p_a[~refused]).all()
    for kind in ("sample", "reasoning"):
        mode = ModeConfig(kind=kind, k=4)  # type: ignore[arg-type]
        out = agent(mode, refusal_rate=0.3).score(batch)
        assert out.n_a is not None and out.n_b is not None and out.n_unparsed is not None
        assert out.response is not None
        np.testing.assert_array_equal(out.n_a + out.n_b + out.n_unparsed, 4)
        whole = out.n_unparsed == 4
        assert 0.25 < whole.mean() < 0.35
        # counts come from parsing the written completions, as for a real model
        first = json.loads(out.response[0])
        assert len(first) == 4
        if kind == "reasoning":
            assert all("Answer:" in c or "rather not" in c for c in first)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"refusal_rate": 1.5}, "refusal_rate = 1.5"),
        ({"refusal_rate": -0.1}, "refusal_rate = -0.1"),
        ({"noise": float("nan")}, "noise = NaN"),
        ({"noise": float("inf")}, "noise = Infinity"),
        ({"noise": -1.0}, "noise = -1.0"),
        ({"noise_by_outcome": {"x": float("nan")}}, "noise_by_outcome.x = NaN"),
        ({"noise_by_outcome": {"x": -0.5}}, "noise_by_outcome.x = -0.5"),
        ({"label_noise": float("inf")}, "label_noise = Infinity"),
        ({"position_bias": float("nan")}, "position_bias = NaN"),
        (
            {"persona_offsets": {"anarcho-royalist": {"x": 1.0}}},
            "unknown persona 'anarcho-royalist'",
        ),
        ({"persona_offsets": {"text:": {"x": 1.0}}}, "is empty"),
        ({"framing_factor": float("nan")}, "framing_factor = NaN"),
    ],
)
def test_an_agent_that_cannot_be_honoured_is_a_one_line_spec_error(fields, needle) -> None:
    from cluster.spec import SpecError, parse_spec

    with pytest.raises(ValidationError):
        ModelConfig(name="simulated", **fields)
    with pytest.raises(SpecError) as caught:
        parse_spec({"outcomes": ["starter"], "models": [{"name": "simulated", **fields}]}, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message and needle in message and "models.0." in message


def test_free_form_choices_miss_the_best_candidate_more_often_with_more_noise() -> None:
    """The maximisation analysis's simulated answers: top-1 falls with noise (its noise stream
    once repeated the utilities' stream, so the best candidate won at every noise level)."""
    from fit.analyses.maximisation import Question, maximisation

    outcomes = gen.maximisation_outcomes()
    questions = gen.open_questions()
    candidates = [q.candidates for q in questions]
    structured = [Question(q.id, q.candidates) for q in questions]
    top1 = []
    for noise in (0.05, 0.5, 1.0, 3.0):
        rates = []
        for seed in range(30):
            model = ModelConfig(name="simulated", seed=seed, noise=noise)
            truth = dict(
                zip(outcomes.ids, true_utilities(model, outcomes.ids).tolist(), strict=True)
            )
            chosen = free_form_choices(model, outcomes.ids, candidates, 0)  # analysis seed 0
            choices = {q.id: c for q, c in zip(questions, chosen, strict=True)}
            rates.append(maximisation(structured, truth, choices).top1_rate)
        top1.append(float(np.mean(rates)))
    assert top1[0] > 0.9
    assert top1[0] > top1[1] > top1[2] > top1[3]
    assert top1[3] < 0.6
    # the seeds the analysis uses by default (model seed 0, analysis seed 0)
    model = ModelConfig(name="simulated", seed=0, noise=1.0)
    truth = dict(zip(outcomes.ids, true_utilities(model, outcomes.ids).tolist(), strict=True))
    chosen = free_form_choices(model, outcomes.ids, candidates, 0)
    best = [max(group, key=truth.__getitem__) for group in candidates]
    assert chosen != best


def test_quantity_reads_the_first_rung_of_a_ladder():
    """ "A chicken is spared" is N = 1, so the framing effect shrinks the whole ladder."""
    from elicit.scorers.reader import quantity

    assert quantity("A chicken is spared from slaughter.") == 1.0
    assert quantity("One person in Japan is saved.") == 1.0
    assert quantity("3 people in Japan are saved.") == 3.0
    assert quantity("You receive $1,000 to spend.") == 1000.0
    assert quantity("Apples fall in autumn.") is None
