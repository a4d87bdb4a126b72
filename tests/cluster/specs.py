"""Specs for cluster tests: a quiet run over the starter outcomes, with overrides."""

from __future__ import annotations

from typing import Any

from cluster.spec import RunSpec


def spec_of(root: str, name: str, models: list[dict[str, Any]], **kw: Any) -> RunSpec:
    """A spec on ``root`` asking ``models`` about the starter set, no intervals, no progress;
    ``kw`` replaces top-level fields (design, prompt, mode, …)."""
    data: dict[str, Any] = {
        "name": name,
        "root": root,
        "outcomes": ["starter"],
        "models": models,
        "fit": {"bootstrap": 0},
        "execution": {"progress": "none"},
    }
    data.update(kw)
    return RunSpec.model_validate(data)
