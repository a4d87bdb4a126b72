"""Layer choice and model checks of the hidden-state extraction (no model is loaded here; the
extraction itself runs on the packaged SmolLM2 in tests/cluster/test_probe.py)."""

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
