"""Shared by the generators: the error type, package data and small text helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from elicit.errors import ElicitError
from elicit.outcomes import Outcome, OutcomeSet


class GeneratorError(ElicitError, ValueError):
    """A generator got unusable parameters, or its package data is malformed."""


def data_path(name: str) -> Path:
    return Path(str(resources.files("elicit") / "data" / "analyses" / name))


def load_data(name: str) -> dict[str, Any]:
    path = data_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GeneratorError(f"package data {str(path)!r}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise GeneratorError(f"package data {str(path)!r}: expected a mapping at the top level")
    return data


def build_set(name: str, outcomes: list[Outcome], description: str, source: str) -> OutcomeSet:
    seen: set[str] = set()
    for o in outcomes:
        if o.id in seen:
            raise GeneratorError(f"{name}: duplicate outcome id {o.id!r}; ids must be unique")
        if not o.text.strip():
            raise GeneratorError(f"{name}: outcome {o.id!r} has empty text")
        seen.add(o.id)
    return OutcomeSet(name, tuple(outcomes), description, source)


def parse_probability(value: Any, where: str) -> Fraction:
    try:
        p = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise GeneratorError(
            f"{where}: probability {value!r} is not a number or a fraction"
        ) from None
    if not 0 <= p <= 1:
        raise GeneratorError(f"{where}: probability {value!r} is outside [0, 1]")
    return p


def check_total(probs: Sequence[Fraction], where: str) -> None:
    if abs(float(sum(probs)) - 1.0) > 1e-6:
        raise GeneratorError(
            f"{where}: probabilities {[str(p) for p in probs]} sum to {float(sum(probs)):.6g}; "
            "they must sum to 1"
        )


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def amount_id(amount: float) -> str:
    return f"{amount:.0f}" if float(amount).is_integer() else slugify(f"{amount:.2f}")


def format_money(amount: float) -> str:
    return f"${amount:,.0f}" if float(amount).is_integer() else f"${amount:,.2f}"
