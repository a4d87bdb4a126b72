"""The citizen-assembly panel: the packaged panel file, persona sampling, persona prompts, the
simulated agent's per-persona variation, and clear errors for bad panel files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from elicit.config import ModelConfig
from elicit.panel import AssemblyError, load_panel, persona_model, sample_personas
from elicit.scorers.simulated import true_utilities


def test_packaged_panel_is_valid_and_complete() -> None:
    panel = load_panel()
    assert {"age", "gender", "region", "occupation", "education", "religion", "politics"} <= set(
        panel.attributes
    )
    leans = {v.value: v.lean for v in panel.attributes["politics"]}
    assert leans["left"] == -1.0 and leans["right"] == 1.0
    assert load_panel("assembly") == panel


def test_sampling_is_seeded_and_follows_the_weights() -> None:
    panel = load_panel()
    people = sample_personas(panel, 2000, seed=3)
    assert [p.id for p in people[:2]] == ["p0001", "p0002"]
    assert people == sample_personas(panel, 2000, seed=3)
    assert people != sample_personas(panel, 2000, seed=4)
    counts = Counter(p.values["politics"] for p in people)
    weights = {v.value: v.weight for v in panel.attributes["politics"]}
    total = sum(weights.values())
    for value, weight in weights.items():
        assert counts[value] / len(people) == pytest.approx(weight / total, abs=0.035)


def test_persona_text_and_system_message() -> None:
    [person] = sample_personas(load_panel(), 1, seed=0)
    assert person.id == "p01"
    assert "{" not in person.description and "  " not in person.description
    assert person.description in person.instruction
    system = person.system("You are a helpful assistant.")
    assert system.startswith("You are a helpful assistant.\n\n")
    assert system.endswith(person.instruction)
    assert person.system(None) == person.instruction
    politics = {v.value: v for v in load_panel().attributes["politics"]}[person.values["politics"]]
    assert politics.text in person.description and person.lean == politics.lean


def test_simulated_personas_vary_with_their_lean() -> None:
    ids = [f"o{k}" for k in range(30)]
    model = ModelConfig(name="simulated", seed=5)
    people = sample_personas(load_panel(), 40, seed=1)
    utilities = {}
    for k, person in enumerate(people):
        tuned = persona_model(model, person, ids, index=k, spread=0.5)
        assert tuned.utilities is not None and list(tuned.utilities) == ids
        utilities[person.id] = np.array([tuned.utilities[o] for o in ids])
    base = true_utilities(model, ids)
    deviation = np.stack([utilities[p.id] - base for p in people])
    leans = np.array([p.lean for p in people])
    # the shared part of the deviation follows the lean: right and left members differ
    right, left = deviation[leans > 0].mean(axis=0), deviation[leans < 0].mean(axis=0)
    assert np.corrcoef(right, -left)[0, 1] > 0.5
    real = ModelConfig(name="smollm2-135m")
    assert persona_model(real, people[0], ids, index=0) is real


def _write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "panel.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _minimal() -> dict:
    return {
        "name": "tiny",
        "instruction": "Answer as {persona}",
        "persona": "a {age} person",
        "attributes": {"age": [{"value": "young", "text": "young", "weight": 1.0}]},
    }


def test_a_minimal_panel_file_loads(tmp_path: Path) -> None:
    panel = load_panel(_write(tmp_path, _minimal()))
    [person] = sample_personas(panel, 1)
    assert person.description == "a young person" and person.lean == 0.0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(colour="blue"), ["colour", "Extra inputs"]),
        (
            lambda d: d["attributes"]["age"][0].update(size=3),
            ["attributes.age.0.size", "Extra inputs"],
        ),
        (lambda d: d.update(persona="a {age} {job}"), ["placeholders without an attribute", "job"]),
        (lambda d: d.update(persona="a person"), ["attributes not in the persona text", "age"]),
        (lambda d: d.update(instruction="Answer"), ["instruction", "{persona}"]),
        (lambda d: d["attributes"]["age"][0].update(weight=0), ["weight", "greater than 0"]),
        (lambda d: d["attributes"].update(age=[]), ["attribute 'age' has no values"]),
        (lambda d: d.pop("persona"), ["persona", "Field required"]),
    ],
)
def test_bad_panel_files_name_the_field(tmp_path: Path, change, words) -> None:
    data = _minimal()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(AssemblyError) as err:
        load_panel(path)
    assert "panel.yaml" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_missing_panel_file_and_bad_count(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="not found"):
        load_panel(tmp_path / "nope.yaml")
    with pytest.raises(AssemblyError, match="at least 1 persona"):
        sample_personas(load_panel(), 0)
