from __future__ import annotations

import pytest

from fit.analyses import AnalysisInputError
from fit.analyses.maximisation import (
    Question,
    maximisation,
    plot_maximisation,
    questions_from_attributes,
)

QUESTIONS = [Question(f"q{k}", tuple(f"q{k}-c{c}" for c in range(5))) for k in range(10)]
UTIL = {f"q{k}-c{c}": float(c) for k in range(10) for c in range(5)}  # c4 is always best


def test_maximiser_and_minimiser():
    best = maximisation(QUESTIONS, UTIL, {q.id: q.candidates[-1] for q in QUESTIONS})
    assert best.top1_rate == 1.0 and best.top3_rate == 1.0
    worst = maximisation(QUESTIONS, UTIL, {q.id: q.candidates[0] for q in QUESTIONS})
    assert worst.top1_rate == 0.0 and worst.top3_rate == 0.0
    third = maximisation(QUESTIONS, UTIL, {q.id: q.candidates[2] for q in QUESTIONS})
    assert third.top1_rate == 0.0 and third.top3_rate == 1.0
    assert list(third.rank) == [3] * 10
    assert best.chance_top1 == pytest.approx(0.2) and best.chance_top3 == pytest.approx(0.6)


def test_unmatched_choices_are_left_out():
    choices = {"q0": "q0-c4", "q1": None, "q2": "not-a-candidate"}
    res = maximisation(QUESTIONS, UTIL, choices)
    assert res.n_answered == 1 and res.n_unmatched == 9 and res.top1_rate == 1.0


def test_questions_from_attributes():
    attrs = {
        "a": {"kind": "candidate", "question": "q"},
        "b": {"kind": "candidate", "question": "q"},
        "c": {"kind": "other"},
    }
    assert questions_from_attributes(attrs) == [Question("q", ("a", "b"))]
    with pytest.raises(AnalysisInputError):
        Question("q", ("a",))


def test_plot(tmp_path, check_png):
    res = maximisation(QUESTIONS, UTIL, {q.id: q.candidates[3] for q in QUESTIONS})
    check_png(plot_maximisation(res, tmp_path / "max.png"))
