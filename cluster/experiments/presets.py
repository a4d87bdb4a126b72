"""Design presets of ``valuescope analyze`` and the prompt count of a design before it runs.

Two presets (docs/analyses.md, "Presets"):

- ``quick`` (the default): a few hundred prompts per analysis and model, for a CPU quickstart;
- ``paper``: the paper's design sizes and, where our default statistic differs from the
  paper's, the paper's variant (question-specific prompts and unmatched answers counted as
  misses for maximisation, the persona asked in the question for political values, the
  mutual-exclusivity framing next to the plain exchange rates).

Explicit options override a preset's values.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np

from cluster.experiments.common import AnalysisError, Base, Options


def _three_significant(x: float) -> float:
    digits = int(np.floor(np.log10(x))) - 2
    return float(round(x, -digits))


PAPER_NS: tuple[int, ...] = tuple(
    int(n) for n in np.unique(np.round(np.geomspace(1, 1e6, 28)).astype(np.int64))
)
"""28 quantities N, geometric from 1 to 1,000,000."""
PAPER_MONEY: tuple[float, ...] = tuple(
    sorted({_three_significant(x) for x in np.geomspace(1.0, 1e9, 100)})
)
"""100 money anchors, geometric from $1 to $1,000,000,000 (three significant figures)."""

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": {
        "n_outcomes": 30,
        "n_base": 20,
        "n_lotteries": 100,
        "n_events": 20,
        "n_processes": 10,
        "n_questions": 15,
        "maximisation_prompts": "question",
        "groups": ("countries", "religions", "animals", "ai"),
        "n_entities": 20,
        "ns": PAPER_NS,
        "money": PAPER_MONEY,
        "framing": True,
        "n_policies": 32,
        "personas": 8,
        "persona_question": "question",
        "delays": tuple(range(1, 61)),
        "n_amounts": 30,
        "n_reversals": 40,
    },
}
"""Option values of each preset (unlisted options keep their defaults)."""


def options_for(preset: str | None, given: dict[str, Any] | None = None) -> Options:
    """The options of a preset, with ``given`` values on top."""
    name = preset or "quick"
    if name not in PRESETS:
        raise AnalysisError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    known = {f.name for f in fields(Options)}
    unknown = sorted(set(given or {}) - known)
    if unknown:
        raise AnalysisError(f"unknown option(s) {unknown}; see cluster.experiments.Options")
    return replace(Options(), preset=name, **{**PRESETS[name], **(given or {})})


def _pairs(k: int) -> int:
    return k * (k - 1) // 2


def planned_prompts(name: str, options: Options, base: Base) -> int | None:
    """Prompts per model the analysis will ask in its derived runs (both orders counted when
    the spec asks both), before anything runs; None for analyses that only read the base run
    or whose size depends on it (corrigibility: one run per model from its own utilities)."""
    from elicit import generators as gen

    o = options
    per_pair = 2 if base.spec.prompt.both_orders else 1
    if name in ("transitivity", "power"):
        pairs = _pairs(o.n_outcomes) * (2 if name == "power" else 1)
    elif name == "robustness":
        pairs = _pairs(o.n_outcomes) * 4 if o.paraphrases else 0
    elif name == "expected-utility":
        from cluster.experiments.coherence import base_outcomes, expected_utility_design
        from cluster.experiments.common import Context

        k = len(expected_utility_design(base_outcomes(Context(name, base, o)), o))
        pairs = min(o.n_pairs if o.n_pairs is not None else 8 * k, _pairs(k))
    elif name == "instrumental":
        states = gen.markov_process_outcomes()
        order = list(dict.fromkeys(s.attributes["process"] for s in states))[: o.n_processes]
        sizes = [sum(s.attributes["process"] == p for s in states) for p in order]
        pairs = sum(_pairs(k) for k in sizes) + len(order) - 1
    elif name == "maximisation":
        qs = gen.open_questions()[: o.n_questions]
        pairs = sum(_pairs(len(q.candidates)) for q in qs)
        pairs += len(qs) - 1 if o.maximisation_prompts == "generic" else 0
    elif name == "exchange-rates":
        from cluster.experiments.values import exchange_design

        k = len(exchange_design(o))
        pairs = min(o.n_pairs if o.n_pairs is not None else 8 * k, _pairs(k))
        pairs *= 2 if o.framing else 1
    elif name == "political":
        n_personas = o.personas if isinstance(o.personas, int) else len(o.personas)
        n_personas = min(n_personas, len(gen.political_personas()))
        pairs = _pairs(min(o.n_policies, len(gen.policy_outcomes()))) * (1 + n_personas)
    elif name == "time-discounting":
        pairs = len(o.delays) * o.n_amounts
    else:
        return None
    return pairs * per_pair
