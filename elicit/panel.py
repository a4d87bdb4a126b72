"""The panel of a simulated citizen assembly: personas drawn from a distribution of demographic
attributes, each asked the usual forced-choice questions in their own voice.

The panel file (package data ``elicit/data/assembly.yaml``, or any file of the same shape) gives,
per attribute, the values a member can have with their weights, a ``persona`` description with
one ``{attribute}`` placeholder per attribute, and an ``instruction`` with a ``{persona}``
placeholder. :func:`sample_personas` draws members with a seed (attributes independently, from
their marginals); :meth:`Persona.system` is the system message a member is asked with (the
run's own system message, then the instruction), so the question wording, the chat formatting
and both option orders stay exactly those of the run.

The simulated scorer has no voice to change, so :func:`persona_model` gives a simulated agent
its own utilities per member instead (the agent's, shifted along a hidden left-right direction
by the member's lean, plus member-specific noise): assembly code paths can then be tested in
milliseconds, with panel disagreement that depends on politics as it would with a real model.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from elicit.config import ModelConfig
from elicit.errors import ElicitError

DEFAULT_PANEL = "assembly"
"""Name of the packaged panel file (``elicit/data/assembly.yaml``)."""


class AssemblyError(ElicitError):
    """A panel file is missing or invalid, or a panel cannot be drawn."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class AttributeValue(_Strict):
    """One value an attribute can take."""

    value: str
    """Short label stored with the persona (e.g. ``centre-left``)."""
    text: str
    """Words slotted into the persona description (e.g. ``centre-left``)."""
    weight: float = Field(gt=0)
    """Relative frequency in the population (weights of an attribute need not sum to 1)."""
    lean: float = Field(0.0, ge=-1.0, le=1.0)
    """Place on a left (-1) to right (+1) axis; 0 for values that say nothing about it."""


class Panel(_Strict):
    """A panel file: the population personas are drawn from and how they are described."""

    name: str
    """Name of the panel."""
    description: str = ""
    """What the panel represents."""
    instruction: str
    """System-message text asking the model to answer as the persona; holds ``{persona}``."""
    persona: str
    """Description of a member with one ``{attribute}`` placeholder per attribute."""
    attributes: dict[str, list[AttributeValue]]
    """Attribute name → the values it takes, with weights."""

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, value: str) -> str:
        fields = _placeholders(value)
        if fields != {"persona"}:
            raise ValueError(
                f"instruction must hold exactly the placeholder {{persona}}, found {sorted(fields)}"
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _values(cls, value: dict[str, list[AttributeValue]]) -> dict[str, list[AttributeValue]]:
        if not value:
            raise ValueError("attributes is empty; give at least one attribute with its values")
        for name, values in value.items():
            if not values:
                raise ValueError(f"attribute {name!r} has no values")
            labels = [v.value for v in values]
            dupes = sorted({x for x in labels if labels.count(x) > 1})
            if dupes:
                raise ValueError(f"attribute {name!r} repeats value(s) {dupes}")
        return value

    @model_validator(mode="after")
    def _persona(self) -> Panel:
        used = _placeholders(self.persona)
        missing = sorted(set(self.attributes) - used)
        unknown = sorted(used - set(self.attributes))
        if unknown or missing:
            raise ValueError(
                "persona placeholders and attributes must match: "
                + "; ".join(
                    part
                    for part in (
                        f"placeholders without an attribute: {unknown}" if unknown else "",
                        f"attributes not in the persona text: {missing}" if missing else "",
                    )
                    if part
                )
            )
        return self


def _placeholders(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ValueError(f"malformed placeholder in {text[:60]!r}: {exc}") from None


def load_panel(source: str | Path | None = None) -> Panel:
    """Read and validate a panel file (None or ``"assembly"``: the packaged panel).

    Raises:
        AssemblyError: the file is missing, not YAML, or has unknown, missing or bad fields; the
            message names the file and the field.
    """
    if source is None or str(source) == DEFAULT_PANEL:
        ref = resources.files("elicit") / "data" / "assembly.yaml"
        label, read = str(ref), ref.read_text
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise AssemblyError(
                f"panel file {str(source)!r} not found; give a YAML file shaped like the packaged "
                f"elicit/data/assembly.yaml, or omit it to use that one"
            )
        label, read = str(path), path.read_text
    try:
        raw = yaml.safe_load(read(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AssemblyError(f"panel file {label!r}: cannot read it ({exc})") from None
    if not isinstance(raw, dict):
        raise AssemblyError(f"panel file {label!r}: expected a mapping at the top level")
    try:
        return Panel.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise AssemblyError(f"panel file {label!r}: {problems}") from None


@dataclass(frozen=True)
class Persona:
    """One member of the panel."""

    id: str
    """``p01``, ``p02``… in drawing order."""
    values: dict[str, str]
    """Attribute → the value label drawn."""
    description: str
    """The persona text with every attribute filled in."""
    lean: float
    """Sum of the leans of the drawn values (-1 left … +1 right for the packaged panel)."""
    instruction: str
    """The panel's instruction, filled in with this description."""

    def system(self, base: str | None) -> str:
        """System message for this member: the run's own system message, then the instruction."""
        return f"{base}\n\n{self.instruction}" if base else self.instruction


def sample_personas(panel: Panel, n: int, seed: int = 0) -> list[Persona]:
    """Draw ``n`` members, each attribute independently from its weights.

    Raises:
        AssemblyError: ``n`` < 1.
    """
    if n < 1:
        raise AssemblyError(f"a panel needs at least 1 persona, got {n}")
    rng = np.random.default_rng(seed)
    drawn: dict[str, np.ndarray] = {}
    for name, values in panel.attributes.items():
        w = np.array([v.weight for v in values], dtype=np.float64)
        drawn[name] = rng.choice(len(values), size=n, p=w / w.sum())
    width = max(2, len(str(n)))
    people = []
    for k in range(n):
        chosen = {name: panel.attributes[name][int(drawn[name][k])] for name in panel.attributes}
        text = " ".join(panel.persona.format(**{a: v.text for a, v in chosen.items()}).split())
        people.append(
            Persona(
                id=f"p{k + 1:0{width}d}",
                values={a: v.value for a, v in chosen.items()},
                description=text,
                lean=float(sum(v.lean for v in chosen.values())),
                instruction=" ".join(panel.instruction.format(persona=text).split()),
            )
        )
    return people


def persona_model(
    model: ModelConfig,
    persona: Persona,
    outcome_ids: list[str],
    *,
    index: int,
    spread: float = 0.5,
) -> ModelConfig:
    """The model config a member is asked with.

    Real models are unchanged (the persona is in the system message). A simulated agent gets
    utilities of its own: ``u + spread · (lean · d + e)``, with ``u`` the agent's utilities, ``d``
    a direction over outcomes drawn once from the agent's seed (what "left" and "right" disagree
    about) and ``e`` noise drawn from the agent's seed and the member's ``index``.
    """
    if model.scorer_kind != "simulated":
        return model
    from elicit.scorers.simulated import true_utilities

    base = true_utilities(model, outcome_ids)
    direction = np.random.default_rng([model.seed, 7_919]).standard_normal(len(outcome_ids))
    noise = np.random.default_rng([model.seed, 104_729, index]).standard_normal(len(outcome_ids))
    own = base + spread * (persona.lean * direction + noise)
    return model.model_copy(
        update={"utilities": {o: float(u) for o, u in zip(outcome_ids, own, strict=True)}}
    )
