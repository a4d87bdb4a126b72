"""Two-step Markov processes for the instrumental-values analysis (package data)."""

from __future__ import annotations

from typing import Any

from elicit.generators._common import (
    GeneratorError,
    build_set,
    check_total,
    data_path,
    load_data,
    parse_probability,
)
from elicit.outcomes import Outcome, OutcomeSet


def markov_process_outcomes() -> OutcomeSet:
    """States of the small Markov processes (package data), one outcome per state.

    Attributes: ``kind: markov_state``, ``process``, ``state``, ``role`` (start, intermediate,
    terminal), ``successors`` (outcome ids) and ``probs``. Ids are ``mp-<process>-<state>``.
    """
    data = load_data("markov_processes.yaml")
    outcomes: list[Outcome] = []
    for proc in data.get("processes") or []:
        pid = f"mp-{proc['id']}"
        states: dict[str, str] = proc.get("states") or {}
        transitions: dict[str, dict[str, Any]] = proc.get("transitions") or {}
        if "start" not in states:
            raise GeneratorError(f"process {pid!r}: needs a state named 'start'")
        for src, succ in transitions.items():
            unknown = [s for s in [src, *succ] if s not in states]
            if unknown:
                raise GeneratorError(f"process {pid!r}: unknown state(s) {unknown}")
            check_total(
                [parse_probability(p, f"process {pid!r}") for p in succ.values()],
                f"process {pid!r}",
            )
        reached = {"start"} | {t for succ in transitions.values() for t in succ}
        if set(states) - reached:
            raise GeneratorError(f"process {pid!r}: unreachable state(s) {set(states) - reached}")
        for key, text in states.items():
            succ = transitions.get(key) or {}
            role = "start" if key == "start" else ("intermediate" if succ else "terminal")
            outcomes.append(
                Outcome(
                    f"{pid}-{key}",
                    str(text),
                    {
                        "kind": "markov_state",
                        "process": pid,
                        "state": key,
                        "role": role,
                        "successors": [f"{pid}-{t}" for t in succ],
                        "probs": [float(parse_probability(p, pid)) for p in succ.values()],
                    },
                )
            )
    return build_set(
        str(data.get("name", "markov_processes")),
        outcomes,
        str(data.get("description", "")),
        str(data_path("markov_processes.yaml")),
    )
