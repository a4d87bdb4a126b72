"""Synthetic agents with known utilities: the ground truth for tests, benchmarks and recovery
studies.

Outcome i has a true utility μᵢ (given, or drawn from N(0, 1) with the seed) and noise σᵢ
(``noise``, spread out by ``noise_spread`` or given per outcome by ``noise_by_outcome``). Shown
outcome X under the letter A and Y under B, the agent prefers A with

    P(A ≻ B) = Φ((μ_X − μ_Y + β) / √(σ_X² + σ_Y²))

where β (``position_bias``) favours the option under A. In ``logprob`` mode this probability is
the measurement; in ``sample`` and ``reasoning`` modes K answers are drawn from it;
``label_noise`` perturbs each logprob measurement on the probit scale. A share ``refusal_rate``
of prompts is refused (no letter: mass 0 in logprob mode, unparseable completions in sampling
modes).

Two agents implement this:

- :class:`SimulatedScorer` (model name ``simulated``) renders every query into the text a model
  would be sent (system message, persona, wording, options; a plain chat transcript, or the base
  text for ``prompt.format: base``) and decides from that text (:mod:`.reader`): it looks for
  the query's two outcome texts and reads which one stands under A and which under B, which personas speak (``persona_offsets``), whether
  the framing phrase is there (``framing_phrase``, ``framing_factor``) and which wording it is
  (``template_sensitivity``). In sampling modes it writes completions that go through the same
  parser as a real model's. A bug in what is asked therefore shows in its answers.
- :class:`FastSimulatedScorer` (model name ``simulated-fast``) reads the outcome indices of the
  query and renders nothing: microseconds per prompt, for throughput benchmarks only. It cannot
  see the prompt, so personas, framing and wording have no effect on it.

With no persona, framing or wording effect configured both agents give the same measurements
for the same queries and seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from fnmatch import fnmatchcase

import numpy as np
from scipy.special import ndtr, ndtri

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ScorerError
from elicit.parsing import counts_to_p
from elicit.prompts import PromptTemplate
from elicit.scorers.base import Measurements, QueryBatch, Scorer
from elicit.scorers.reader import persona_phrase, quantity, read_options, wording

#: Completion of a refused prompt in sampling modes (the parser finds no letter in it).
REFUSAL_TEXT = "I would rather not choose between these."
#: Stream tags, so no two of the agent's random streams share a seed (numpy's SeedSequence
#: treats ``[seed, 0]`` as ``seed``: every tag is non-zero and comes last).
_NOISE_TAG = 0x51
_WORDING_TAG = 0x57
_CHOICE_TAG = 0x43


def true_utilities(model: ModelConfig, outcome_ids: Sequence[str]) -> np.ndarray:
    """The agent's utilities, one per outcome (in the given order)."""
    if model.utilities is not None:
        missing = [o for o in outcome_ids if o not in model.utilities]
        if missing:
            raise ScorerError(
                f"simulated model {model.name!r}: no utility for outcome(s) {missing[:5]}"
                f"{' …' if len(missing) > 5 else ''}; give every outcome a utility or none"
            )
        return np.array([model.utilities[o] for o in outcome_ids], dtype=np.float64)
    return np.random.default_rng(model.seed).standard_normal(len(outcome_ids))


def true_noise(model: ModelConfig, outcome_ids: Sequence[str]) -> np.ndarray:
    """The agent's σᵢ, one per outcome: ``noise · exp(noise_spread · zᵢ)``, then any
    ``noise_by_outcome`` entries."""
    sigma = np.full(len(outcome_ids), float(model.noise))
    if model.noise_spread > 0:
        z = np.random.default_rng([model.seed, _NOISE_TAG]).standard_normal(len(outcome_ids))
        sigma = sigma * np.exp(model.noise_spread * z)
    if model.noise_by_outcome:
        given = model.noise_by_outcome
        sigma = np.array(
            [given.get(o, s) for o, s in zip(outcome_ids, sigma.tolist(), strict=True)]
        )
    return sigma


def free_form_choices(
    model: ModelConfig,
    outcome_ids: Sequence[str],
    candidates: Sequence[Sequence[str]],
    seed: int,
) -> list[str]:
    """The agent's answers to open questions: per question, the candidate of highest noisy
    utility μᵢ + σᵢ·zᵢ (one fresh zᵢ ~ N(0, 1) per candidate and question).

    The draws z come from a stream of their own, seeded by the model's seed, ``seed`` and a
    tag, so they never repeat the draws of the utilities (which would make the noisy order the
    true order at every noise level).

    Args:
        model: the simulated model.
        outcome_ids: every outcome the utilities are defined over (in their seeding order).
        candidates: per question, the outcome ids of its candidates.
        seed: the analysis seed.
    """
    index = {o: i for i, o in enumerate(outcome_ids)}
    u, sigma = true_utilities(model, outcome_ids), true_noise(model, outcome_ids)
    flat = np.array([index[c] for group in candidates for c in group], dtype=np.int64)
    z = np.random.default_rng([model.seed, seed, _CHOICE_TAG]).standard_normal(len(flat))
    noisy = u[flat] + sigma[flat] * z
    bounds = np.cumsum([len(group) for group in candidates])[:-1]
    return [
        group[int(np.argmax(values))]
        for group, values in zip(candidates, np.split(noisy, bounds), strict=True)
    ]


def _ids(outcome_texts: Sequence[str], outcome_ids: Sequence[str] | None) -> list[str]:
    if outcome_ids is None:
        return [str(i) for i in range(len(outcome_texts))]
    if len(outcome_ids) != len(outcome_texts):
        raise ScorerError(
            f"simulated agent: {len(outcome_ids)} outcome ids for {len(outcome_texts)} texts"
        )
    return list(outcome_ids)


class FastSimulatedScorer(Scorer):
    """Index-reading agent (``simulated-fast``): throughput benchmarks only."""

    simulated = True

    def __init__(
        self,
        model: ModelConfig,
        mode: ModeConfig,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
        outcome_ids: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, mode, template, outcome_texts)
        self.outcome_ids = _ids(outcome_texts, outcome_ids)
        self.utilities = true_utilities(model, self.outcome_ids)
        self.sigma = true_noise(model, self.outcome_ids)

    def probability(
        self, a_idx: np.ndarray, b_idx: np.ndarray, diff: np.ndarray | None = None
    ) -> np.ndarray:
        """P(A ≻ B) with outcome ``a_idx`` under A; ``diff`` is μ_A − μ_B when the prompt's
        context changed the utilities (else the agent's own are used)."""
        scale = np.sqrt(self.sigma[a_idx] ** 2 + self.sigma[b_idx] ** 2)
        if diff is None:
            diff = self.utilities[a_idx] - self.utilities[b_idx]
        return np.asarray(ndtr((diff + self.model.position_bias) / scale))

    def _rng(self, batch: QueryBatch) -> np.random.Generator:
        # Deterministic per batch (its first query and its length), whatever the replica;
        # another cut of the same prompts into shards draws other noise.
        n = len(batch)
        return np.random.default_rng(
            [self.model.seed, int(batch.pair_id[0]), int(batch.a_idx[0]), n]
        )

    def _answer(
        self, rng: np.random.Generator, p: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(P(A) after label noise, refused, counts (n_a, n_b, n_unparsed) or None)."""
        n = len(p)
        if self.model.label_noise > 0 and self.mode.kind == "logprob":
            p = ndtr(ndtri(p) + self.model.label_noise * rng.standard_normal(n))
        refused = rng.random(n) < self.model.refusal_rate
        if self.mode.kind == "logprob":
            return p, refused, None
        k = self.mode.k
        n_unparsed = rng.binomial(k, np.where(refused, 1.0, 0.0))
        n_a = rng.binomial(k - n_unparsed, p)
        return p, refused, np.stack([n_a, k - n_unparsed - n_a, n_unparsed])

    def score(self, batch: QueryBatch) -> Measurements:
        n = len(batch)
        out = Measurements.empty(n)
        if n == 0:
            return out
        rng = self._rng(batch)
        p, refused, counts = self._answer(rng, self.probability(batch.a_idx, batch.b_idx))
        if counts is None:
            write_logprob(out, p, refused)
        else:
            out.n_a, out.n_b, out.n_unparsed = (c.astype(np.int32) for c in counts)
            out.p_a = counts_to_p(out.n_a, out.n_b, out.n_unparsed, self.mode.unparseable, rng)
            out.p_b = 1.0 - out.p_a
        return out


def write_logprob(out: Measurements, p: np.ndarray, refused: np.ndarray) -> None:
    """Logprob-mode columns: P(A) = ``p``; refused prompts put no mass on either letter."""
    out.p_a = np.where(refused, np.nan, p)
    out.p_b = 1.0 - out.p_a
    with np.errstate(divide="ignore"):
        out.lp_a = np.where(refused, -np.inf, np.log(p))
        out.lp_b = np.where(refused, -np.inf, np.log1p(-p))
    out.mass = np.where(refused, 0.0, 1.0)


def transcript(template: PromptTemplate, option_a: str, option_b: str, system_role: bool) -> str:
    """The prompt text the agent reads: ``prompt.format: base`` gives the base-model text,
    anything else a plain chat transcript of the same system and user turns a chat model gets
    (the agent has no tokenizer, so no model-specific chat markup)."""
    if template.format == "base":
        return template.base_text(option_a, option_b)
    turns = template.messages(option_a, option_b, system_role=system_role)
    body = "".join(f"<|{t['role']}|>\n{t['content']}\n" for t in turns)
    return f"{body}<|assistant|>\n{template.answer_prefix}"


class SimulatedScorer(FastSimulatedScorer):
    """Prompt-reading agent (``simulated``, see module docstring)."""

    def __init__(
        self,
        model: ModelConfig,
        mode: ModeConfig,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
        outcome_ids: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, mode, template, outcome_texts, outcome_ids)
        n = len(self.outcome_ids)
        self.personas: list[tuple[str, np.ndarray]] = []
        for key, offsets in (model.persona_offsets or {}).items():
            vector = np.zeros(n)
            for pattern, offset in offsets.items():
                hit = np.array([fnmatchcase(o, pattern) for o in self.outcome_ids], dtype=bool)
                vector[hit] += offset
            self.personas.append((persona_phrase(key), vector))
        self.phrases = tuple(phrase for phrase, _ in self.personas)
        self.framing = model.framing_phrase if model.framing_factor != 1.0 else None
        self.quantities = np.array(
            [np.nan if (q := quantity(t)) is None else q for t in self.outcome_texts]
        )
        self._contexts: dict[tuple[int | None, tuple[bool, ...], bool], int] = {}
        self._context_utilities: list[np.ndarray] = []

    def render(self, a_idx: int, b_idx: int) -> str:
        return transcript(
            self.template,
            self.outcome_texts[a_idx],
            self.outcome_texts[b_idx],
            system_role=self.model.system_role is not False,
        )

    def context_row(self, text: str, options: tuple[str, str]) -> int:
        """Row of the utilities this prompt's context (wording, personas, framing) gives."""
        wording_id = None
        if self.model.template_sensitivity > 0:
            words = wording(text, options, self.phrases)
            wording_id = zlib.crc32(words.encode("utf-8"))
        key = (
            wording_id,
            tuple(phrase in text for phrase in self.phrases),
            self.framing is not None and self.framing in text,
        )
        row = self._contexts.get(key)
        if row is None:
            row = self._contexts[key] = len(self._context_utilities)
            self._context_utilities.append(self._utilities_in(*key))
        return row

    def utilities_for_prompt(self, text: str, options: tuple[str, str]) -> np.ndarray:
        """The utilities the agent answers a prompt with (its own, plus the effects of the
        prompt's wording, personas and framing)."""
        return self._context_utilities[self.context_row(text, options)].copy()

    def _utilities_in(
        self, wording_id: int | None, personas: tuple[bool, ...], framed: bool
    ) -> np.ndarray:
        u = self.utilities.copy()
        if wording_id is not None:
            rng = np.random.default_rng([self.model.seed, wording_id, _WORDING_TAG])
            u += self.model.template_sensitivity * rng.standard_normal(len(u))
        for (_, offsets), present in zip(self.personas, personas, strict=True):
            if present:
                u += offsets
        if framed:
            u = shrink_within_quantity(u, self.quantities, self.model.framing_factor)
        return u

    def read(
        self, batch: QueryBatch
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
        """Render and read every query: (outcome under A, outcome under B, context row, error)."""
        n = len(batch)
        under_a = np.asarray(batch.a_idx, dtype=np.int64).copy()
        under_b = np.asarray(batch.b_idx, dtype=np.int64).copy()
        context = np.zeros(n, dtype=np.int64)
        errors: list[str | None] = [None] * n
        texts = self.outcome_texts
        for i, (a, b) in enumerate(zip(batch.a_idx.tolist(), batch.b_idx.tolist(), strict=True)):
            text = self.render(a, b)
            reading = read_options(text, texts[a], texts[b])
            if reading.error is not None:
                errors[i] = f"simulated agent cannot read the prompt: {reading.error}"
                continue
            if reading.swapped:
                under_a[i], under_b[i] = b, a
            context[i] = self.context_row(text, (texts[a], texts[b]))
        return under_a, under_b, context, errors

    def score(self, batch: QueryBatch) -> Measurements:
        n = len(batch)
        out = Measurements.empty(n)
        if n == 0:
            return out
        under_a, under_b, context, errors = self.read(batch)
        table = np.stack(self._context_utilities) if self._context_utilities else None
        if table is None:  # nothing readable
            p = np.full(n, 0.5)
        else:
            diff = table[context, under_a] - table[context, under_b]
            p = self.probability(under_a, under_b, diff)
        unread = np.array([e is not None for e in errors])
        p = np.where(unread, 0.5, p)
        rng = self._rng(batch)
        p, refused, counts = self._answer(rng, p)
        if counts is None:
            write_logprob(out, p, refused)
        else:
            self._write_completions(out, counts, unread, rng)
        out.error = errors
        for column in (out.p_a, out.p_b, out.lp_a, out.lp_b, out.mass):
            column[unread] = np.nan
        return out

    def _write_completions(
        self, out: Measurements, counts: np.ndarray, unread: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Sampling modes: write K completions per prompt and read them with the real parser."""
        from elicit.scorers.tokens import empty_measurements, fill_samples

        n = counts.shape[1]
        filled = empty_measurements(n, self.mode)
        if self.mode.kind == "reasoning":
            said = {
                "A": "Weighing the two options.\nAnswer: A",
                "B": "Weighing the two options.\nAnswer: B",
            }
        else:
            said = {"A": "A", "B": "B"}
        rows = np.flatnonzero(~unread).tolist()
        completions = [
            [said["A"]] * int(counts[0, r])
            + [said["B"]] * int(counts[1, r])
            + [REFUSAL_TEXT] * int(counts[2, r])
            for r in rows
        ]
        fill_samples(filled, rows, completions, self.mode, rng)
        out.p_a, out.p_b = filled.p_a, filled.p_b
        out.n_a, out.n_b, out.n_unparsed = filled.n_a, filled.n_b, filled.n_unparsed
        out.response = filled.response


def shrink_within_quantity(u: np.ndarray, quantities: np.ndarray, factor: float) -> np.ndarray:
    """Move each quantity outcome's utility toward the mean of the outcomes stating the same
    quantity: ``m_N + factor · (u − m_N)``; outcomes without a quantity are unchanged."""
    has = np.isfinite(quantities)
    if not has.any():
        return u
    values, codes = np.unique(quantities[has], return_inverse=True)
    means = np.bincount(codes, weights=u[has], minlength=len(values)) / np.bincount(
        codes, minlength=len(values)
    )
    out = u.copy()
    out[has] = means[codes] + factor * (u[has] - means[codes])
    return out
