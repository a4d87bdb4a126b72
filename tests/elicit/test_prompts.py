from __future__ import annotations

import math

import numpy as np
import pytest

from elicit.config import PromptConfig
from elicit.errors import TemplateError
from elicit.parsing import count_letters, counts_to_p, letter_probs, parse_letter, parse_reasoning
from elicit.prompts import DEFAULT_TEMPLATE, PromptTemplate, render


def test_template_needs_both_placeholders():
    with pytest.raises(TemplateError, match="option_b"):
        PromptTemplate("t", "Pick {option_a}", None)
    with pytest.raises(TemplateError, match="stray placeholder"):
        PromptTemplate("t", "{option_a} {option_b} {oops}", None)
    with pytest.raises(ValueError, match="option_a"):
        PromptConfig(template="only {option_b}")


def test_messages_fold_system_when_no_system_role():
    t = PromptTemplate("t", DEFAULT_TEMPLATE, "Be brief.")
    with_role = t.messages("x", "y")
    assert [m["role"] for m in with_role] == ["system", "user"]
    folded = t.messages("x", "y", system_role=False)
    assert len(folded) == 1 and folded[0]["content"].startswith("Be brief.\n\n")
    assert "Option A:\nx" in folded[0]["content"]


def test_base_format_ends_in_cue():
    t = PromptTemplate("t", DEFAULT_TEMPLATE, None, format="base")
    text = render(t, "first", "second")
    assert text.endswith("\n\nAnswer:") and text.index("first") < text.index("second")


class FakeTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        body = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")


def test_chat_render_with_answer_prefix():
    t = PromptTemplate("t", DEFAULT_TEMPLATE, "sys", answer_prefix="Answer:")
    text = render(t, "a", "b", tokenizer=FakeTokenizer())
    assert text.startswith("<system>sys<user>") and text.endswith("<assistant>Answer:")


def test_letter_probs():
    lp = {" A": math.log(0.3), "A": math.log(0.1), "B": math.log(0.2), "C": math.log(0.4)}
    p_a, p_b, lp_a, lp_b, mass = letter_probs(lp)
    assert p_a == pytest.approx(0.4 / 0.6) and p_a + p_b == pytest.approx(1)
    assert mass == pytest.approx(0.6) and lp_a == pytest.approx(math.log(0.4))
    p_a, _, lp_a, _, mass = letter_probs({"C": 0.0})
    assert math.isnan(p_a) and mass == 0 and lp_a == -math.inf


@pytest.mark.parametrize(
    "text, want",
    [
        ("A", "A"),
        (" B.", "B"),
        ("(A)", "A"),
        ("I choose B", "B"),
        ("A or B", None),
        ("Apples", None),
        ("", None),
        ("Option A is better", "A"),
    ],
)
def test_parse_letter(text, want):
    assert parse_letter(text) == want


def test_parse_reasoning_takes_first_answer():
    assert parse_reasoning("thinking... Answer: B\nAnswer: A") == "B"
    assert parse_reasoning("Answer: **A**") == "A"
    assert parse_reasoning("no answer here") is None


def test_counts_to_p_policies():
    n_a, n_b, n_u = np.array([3, 0]), np.array([1, 0]), np.array([2, 4])
    skip = counts_to_p(n_a, n_b, n_u, "skip")
    assert skip[0] == pytest.approx(0.75) and np.isnan(skip[1])
    dist = counts_to_p(n_a, n_b, n_u, "distribution")
    assert dist[0] == pytest.approx(4 / 6) and dist[1] == pytest.approx(0.5)
    rnd = counts_to_p(n_a, n_b, n_u, "random", np.random.default_rng(0))
    assert 0.5 <= rnd[0] <= 5 / 6
    assert count_letters(["A", None, "B", "A"]) == (2, 1, 1)
