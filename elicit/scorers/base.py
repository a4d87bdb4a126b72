"""The one interface every scorer implements.

A scorer is built once per replica with the outcome texts and the resolved prompt template, then
scores batches of oriented queries. Queries carry outcome *indices*, not texts, so a shard of
a million prompts costs a few arrays to ship; the scorer renders text only when a real model
needs it. Results are columnar (one numpy array per measurement column) so nothing loops over
rows in Python on the fast path.

Three kinds of failure (docs/architecture.md, "The fault model"): a bad answer or failed request is a row with ``error`` set;
a transient fault is retried inside the scorer; an engine that cannot work raises
:class:`elicit.errors.ScorerError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from elicit.config import ModeConfig, ModelConfig
from elicit.prompts import PromptTemplate


@dataclass(frozen=True)
class QueryBatch:
    """Oriented questions: outcome ``a_idx`` shown as option A, ``b_idx`` as option B.

    All arrays have shape (n,). Indices point into the outcome list the scorer was built with.
    """

    pair_id: np.ndarray
    a_idx: np.ndarray
    b_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_id)

    def take(self, index: np.ndarray | slice) -> QueryBatch:
        """A sub-batch (rows selected by ``index``)."""
        return QueryBatch(self.pair_id[index], self.a_idx[index], self.b_idx[index])


@dataclass
class Measurements:
    """Scorer output for a batch, one entry per query, in query order.

    Float columns use NaN for "not measured"; ``error`` is None where the query succeeded.
    """

    p_a: np.ndarray
    p_b: np.ndarray
    lp_a: np.ndarray
    lp_b: np.ndarray
    mass: np.ndarray
    latency_ms: np.ndarray
    error: list[str | None]
    n_a: np.ndarray | None = None
    n_b: np.ndarray | None = None
    n_unparsed: np.ndarray | None = None
    response: list[str | None] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> Measurements:
        """All-NaN measurements for ``n`` queries (fill in what the scorer measures)."""
        nan = np.full(n, np.nan)
        return cls(
            p_a=nan.copy(),
            p_b=nan.copy(),
            lp_a=nan.copy(),
            lp_b=nan.copy(),
            mass=nan.copy(),
            latency_ms=np.zeros(n, dtype=np.float32),
            error=[None] * n,
        )

    def __len__(self) -> int:
        return len(self.p_a)


class Scorer(ABC):
    """Scores oriented queries with one model engine."""

    #: True for synthetic agents; results then say they are simulated.
    simulated: bool = False

    def __init__(
        self,
        model: ModelConfig,
        mode: ModeConfig,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
    ) -> None:
        self.model = model
        self.mode = mode
        self.template = template
        self.outcome_texts = list(outcome_texts)

    @abstractmethod
    def score(self, batch: QueryBatch) -> Measurements:
        """Measure every query of the batch; never drops or reorders queries."""

    def render(self, a_idx: int, b_idx: int) -> str:
        """Model input text for one query (scorers with a tokenizer override this)."""
        return self.template.base_text(self.outcome_texts[a_idx], self.outcome_texts[b_idx])

    def close(self) -> None:  # noqa: B027 - optional hook, most scorers hold nothing
        """Release the engine (GPU memory, sockets)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
