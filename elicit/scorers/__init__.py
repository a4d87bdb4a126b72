"""Scorers: one interface (:class:`Scorer`), four engines.

Engines are imported lazily so that importing this package never pulls in torch, vllm or
network clients.
"""

from __future__ import annotations

from collections.abc import Sequence

from elicit.config import FAST_SIMULATED, ModeConfig, ModelConfig
from elicit.prompts import PromptTemplate
from elicit.scorers.base import Measurements, QueryBatch, Scorer

__all__ = ["Measurements", "QueryBatch", "Scorer", "make_scorer"]


def make_scorer(
    model: ModelConfig,
    mode: ModeConfig,
    template: PromptTemplate,
    outcome_texts: Sequence[str],
    outcome_ids: Sequence[str] | None = None,
) -> Scorer:
    """Build the scorer a model config asks for (loads the model)."""
    kind = model.scorer_kind
    if kind == "simulated":
        from elicit.scorers.simulated import FastSimulatedScorer, SimulatedScorer

        agent = FastSimulatedScorer if model.name == FAST_SIMULATED else SimulatedScorer
        return agent(model, mode, template, outcome_texts, outcome_ids=outcome_ids)
    if kind == "hf":
        from elicit.scorers.hf import HFScorer

        return HFScorer(model, mode, template, outcome_texts)
    if kind == "vllm":
        from elicit.scorers.vllm import VLLMScorer

        return VLLMScorer(model, mode, template, outcome_texts)
    if kind == "openai":
        from elicit.scorers.openai import OpenAIScorer

        return OpenAIScorer(model, mode, template, outcome_texts)
    raise ValueError(f"unknown scorer {kind!r}")
