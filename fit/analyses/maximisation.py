"""Utility maximisation: does a model's free-form choice pick its highest-utility option?

Each open question has candidate answers that are also outcomes with fitted utilities. The model
answers the question freely; its answer is mapped to one candidate (or to none). A utility
maximiser picks the candidate with the highest utility: the top-1 rate is the share of answered
questions where it did, the top-3 rate the share where the choice is among the three highest.
Chance levels (a uniformly random choice among the candidates) are reported alongside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    IntArray,
    lookup,
    new_figure,
    save_figure,
)


@dataclass(frozen=True)
class Question:
    """An open question and the outcome ids of its candidate answers."""

    id: str
    """Question id."""
    candidates: tuple[str, ...]
    """Outcome ids of the candidate answers (at least 2)."""

    def __post_init__(self) -> None:
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates):
            raise AnalysisInputError(
                f"question {self.id!r}: needs at least 2 distinct candidates, got "
                f"{list(self.candidates)}"
            )


@dataclass(frozen=True)
class MaximisationResult:
    """How often free-form choices are the utility-maximising candidates."""

    question_ids: tuple[str, ...]
    """Ids of the questions with a usable choice, in the order of ``rank``."""
    rank: IntArray
    """Utility rank of the chosen candidate among its question's candidates (1 = best)."""
    n_candidates: IntArray
    """Number of candidates per question, aligned with ``rank``."""
    top1_rate: float
    """Share of answered questions whose choice has the highest utility."""
    top3_rate: float
    """Share of answered questions whose choice is among the three highest."""
    chance_top1: float
    """Expected top-1 rate of a uniformly random choice (mean of 1/k)."""
    chance_top3: float
    """Expected top-3 rate of a uniformly random choice (mean of min(3, k)/k)."""
    n_questions: int
    """Questions given, answered or not."""
    n_unmatched: int
    """Questions whose choice is None or not one of their candidates (left out of the rates)."""

    @property
    def n_answered(self) -> int:
        """Questions behind the rates."""
        return len(self.rank)


def questions_from_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> list[Question]:
    """Questions from outcome attributes: candidates carry ``kind: candidate`` and ``question``."""
    grouped: dict[str, list[str]] = {}
    for oid, attrs in attributes.items():
        if attrs.get("kind") == "candidate":
            grouped.setdefault(str(attrs["question"]), []).append(oid)
    return [Question(qid, tuple(ids)) for qid, ids in grouped.items()]


def maximisation(
    questions: Sequence[Question],
    utilities: Mapping[str, float],
    choices: Mapping[str, str | None],
) -> MaximisationResult:
    """Top-1 and top-3 agreement between free-form choices and utilities.

    Args:
        questions: questions with their candidate outcome ids.
        utilities: outcome id → fitted utility μ of every candidate.
        choices: question id → the outcome id the model chose, or None when its answer matched no
            candidate. A question missing here counts as unmatched.

    Ties in utility give the chosen candidate the best rank among its equals.
    """
    if not questions:
        raise AnalysisInputError("maximisation: no questions given")
    ids, ranks, sizes = [], [], []
    for q in questions:
        choice = choices.get(q.id)
        if choice is None or choice not in q.candidates:
            continue
        u = lookup(f"utilities of the candidates of {q.id!r}", utilities, q.candidates)
        chosen = u[q.candidates.index(choice)]
        ids.append(q.id)
        ranks.append(1 + int(np.sum(u > chosen)))
        sizes.append(len(q.candidates))
    rank = np.array(ranks, dtype=np.int64)
    k: FloatArray = np.array([len(q.candidates) for q in questions], dtype=np.float64)
    return MaximisationResult(
        question_ids=tuple(ids),
        rank=rank,
        n_candidates=np.array(sizes, dtype=np.int64),
        top1_rate=float(np.mean(rank <= 1)) if len(rank) else float("nan"),
        top3_rate=float(np.mean(rank <= 3)) if len(rank) else float("nan"),
        chance_top1=float(np.mean(1.0 / k)),
        chance_top3=float(np.mean(np.minimum(3.0, k) / k)),
        n_questions=len(questions),
        n_unmatched=len(questions) - len(ids),
    )


def intervals(result: MaximisationResult) -> dict[str, tuple[float, float]]:
    """95 % Wilson intervals of the top-k rates: over the matched answers (``top1_rate``,
    ``top3_rate``) and over every question, an unmatched answer a miss (``top1_rate_all``,
    ``top3_rate_all``, the paper's statistic)."""
    from fit.analyses.intervals import wilson

    n = len(result.rank)
    hits1, hits3 = float(np.sum(result.rank <= 1)), float(np.sum(result.rank <= 3))
    return {
        "top1_rate": wilson(hits1, n),
        "top3_rate": wilson(hits3, n),
        "top1_rate_all": wilson(hits1, result.n_questions),
        "top3_rate_all": wilson(hits3, result.n_questions),
    }


def plot_maximisation(result: MaximisationResult, path: str | Path) -> Path:
    """Bars of the top-1 and top-3 rates next to their chance levels."""
    fig = new_figure(5.5, 4.0)
    ax = fig.add_subplot()
    x = np.arange(2)
    ax.bar(x - 0.2, [result.top1_rate, result.top3_rate], 0.4, label="model")
    ax.bar(x + 0.2, [result.chance_top1, result.chance_top3], 0.4, label="random choice")
    ax.set_xticks(x, ["top-1", "top-3"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of questions")
    ax.set_title(
        f"Utility maximisation ({result.n_answered} of {result.n_questions} questions answered)"
    )
    ax.legend()
    return save_figure(fig, path)
