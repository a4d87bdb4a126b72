"""A synthetic agent with known utilities: the ground truth for tests, benchmarks and recovery
studies.

Outcome i has a true utility μᵢ (given, or drawn from N(0, 1) with the seed) and noise σ
(``noise``). Shown A first and B second, it prefers A with

    P(A ≻ B) = Φ((μ_A − μ_B + β) / √(σ_A² + σ_B²))

where β (``position_bias``) favours the first-listed option. In ``logprob`` mode this
probability is the measurement; in ``sample`` and ``reasoning`` modes K answers are drawn from
it; ``label_noise`` perturbs each logprob measurement on the probit scale. A share
``refusal_rate`` of prompts is refused (no letter: mass 0 in logprob mode, an
unparseable completion in sampling modes). Every measurement is exact and vectorised, so the
scorer costs microseconds per prompt and exercises the pipeline, not a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ScorerError
from elicit.parsing import counts_to_p
from elicit.prompts import PromptTemplate
from elicit.scorers.base import Measurements, QueryBatch, Scorer


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


class SimulatedScorer(Scorer):
    """Thurstonian agent with known utilities (see module docstring)."""

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
        ids = (
            list(outcome_ids)
            if outcome_ids is not None
            else [str(i) for i in range(len(outcome_texts))]
        )
        self.utilities = true_utilities(model, ids)
        self.sigma = np.full(len(ids), float(model.noise))

    def probability(self, a_idx: np.ndarray, b_idx: np.ndarray) -> np.ndarray:
        """P(A ≻ B) for oriented queries (A shown first)."""
        scale = np.sqrt(self.sigma[a_idx] ** 2 + self.sigma[b_idx] ** 2)
        return ndtr(
            (self.utilities[a_idx] - self.utilities[b_idx] + self.model.position_bias) / scale
        )

    def score(self, batch: QueryBatch) -> Measurements:
        n = len(batch)
        out = Measurements.empty(n)
        if n == 0:
            return out
        # Deterministic per batch content, whatever the sharding or the replica.
        rng = np.random.default_rng(
            [self.model.seed, int(batch.pair_id[0]), int(batch.a_idx[0]), n]
        )
        p = self.probability(batch.a_idx, batch.b_idx)
        if self.model.label_noise > 0 and self.mode.kind == "logprob":
            p = ndtr(ndtri(p) + self.model.label_noise * rng.standard_normal(n))
        refused = rng.random(n) < self.model.refusal_rate
        if self.mode.kind == "logprob":
            mass = np.where(refused, 0.0, 1.0)
            out.p_a = np.where(refused, np.nan, p)
            out.p_b = 1.0 - out.p_a
            with np.errstate(divide="ignore"):
                out.lp_a = np.where(refused, -np.inf, np.log(p))
                out.lp_b = np.where(refused, -np.inf, np.log1p(-p))
            out.mass = mass
        else:
            k = self.mode.k
            n_unparsed = rng.binomial(k, np.where(refused, 1.0, 0.0))
            n_a = rng.binomial(k - n_unparsed, p)
            out.n_a = n_a.astype(np.int32)
            out.n_b = (k - n_unparsed - n_a).astype(np.int32)
            out.n_unparsed = n_unparsed.astype(np.int32)
            out.p_a = counts_to_p(out.n_a, out.n_b, out.n_unparsed, self.mode.unparseable, rng)
            out.p_b = 1.0 - out.p_a
        out.latency_ms = np.zeros(n, dtype=np.float32)
        return out
