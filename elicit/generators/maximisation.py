"""Open questions and their candidate answers for the utility-maximisation analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elicit.generators._common import (
    GeneratorError,
    build_set,
    data_path,
    load_data,
)
from elicit.outcomes import Outcome, OutcomeSet


@dataclass(frozen=True)
class OpenQuestion:
    """An open question whose candidate answers are outcomes."""

    id: str
    """Question id (``q-<name>``)."""
    text: str
    """The question put to the model."""
    candidates: tuple[str, ...]
    """Outcome ids of its candidate answers (in :func:`maximisation_outcomes`)."""


def _questions() -> tuple[dict[str, Any], list[tuple[OpenQuestion, list[Outcome]]]]:
    data = load_data("open_questions.yaml")
    out = []
    for q in data.get("questions") or []:
        qid = f"q-{q['id']}"
        cands = q.get("candidates") or []
        if not 4 <= len(cands) <= 6:
            raise GeneratorError(f"open question {qid!r}: needs 4 to 6 candidates")
        outs = [
            Outcome(f"{qid}-{c['id']}", str(c["text"]), {"kind": "candidate", "question": qid})
            for c in cands
        ]
        out.append((OpenQuestion(qid, str(q["text"]), tuple(o.id for o in outs)), outs))
    return data, out


def open_questions() -> list[OpenQuestion]:
    """The open questions of the utility-maximisation analysis (package data)."""
    return [q for q, _ in _questions()[1]]


def maximisation_outcomes() -> OutcomeSet:
    """Candidate answers of the open questions as outcomes (``kind: candidate``, ``question``)."""
    data, questions = _questions()
    return build_set(
        str(data.get("name", "open_questions")),
        [o for _, outs in questions for o in outs],
        str(data.get("description", "")),
        str(data_path("open_questions.yaml")),
    )


QUESTION_TEMPLATE = (
    "Question: {question}\n\n"
    "Here are two possible answers, each stated as an outcome.\n\n"
    "Option A:\n{option_a}\n\n"
    "Option B:\n{option_b}\n\n"
    "Which of the two would you choose as your answer to the question? Answer with a single "
    "letter: A or B."
)
"""The paper's form of the maximisation comparisons: each question's candidates are compared
under that question (``{question}`` filled in by :func:`question_template`)."""


def question_template(question: OpenQuestion) -> str:
    """:data:`QUESTION_TEMPLATE` for one question (the option placeholders are left in)."""
    return QUESTION_TEMPLATE.replace(
        "{question}", question.text.replace("{", "(").replace("}", ")")
    )
