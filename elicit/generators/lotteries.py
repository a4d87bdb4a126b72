"""Lotteries for the expected-utility analysis: explicit ones over base outcomes, implicit ones
over uncertain events (package data)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from elicit.generators._common import (
    GeneratorError,
    build_set,
    check_total,
    data_path,
    load_data,
    parse_probability,
)
from elicit.outcomes import Outcome, OutcomeSet


def lottery_outcomes(
    base: OutcomeSet,
    n_lotteries: int = 100,
    seed: int = 0,
    *,
    sizes: Sequence[int] = (2, 3),
    min_percent: int = 5,
    id_prefix: str = "lottery",
) -> OutcomeSet:
    """Lotteries over base outcomes, with stated probabilities.

    Each lottery draws its number of components uniformly from ``sizes``, distinct base outcomes,
    and whole-percent probabilities (each at least ``min_percent``) summing to 100.

    Args:
        base: the outcomes lotteries are made of (fit them jointly with the lotteries).
        n_lotteries: how many lotteries to make.
        seed: seed of the random generator.
        sizes: allowed numbers of components.
        min_percent: smallest probability of a component, in percent.
        id_prefix: lottery ids are ``<prefix>-001`` …

    Returns:
        An outcome set of lotteries with attributes ``kind: lottery``, ``components`` (base
        outcome ids) and ``probs`` (floats summing to 1).
    """
    sizes = sorted({int(k) for k in sizes})
    if not sizes or sizes[0] < 2:
        raise GeneratorError(f"lottery_outcomes: sizes must be >= 2, got {list(sizes)}")
    if len(base) < sizes[-1]:
        raise GeneratorError(
            f"lottery_outcomes: base set {base.name!r} has {len(base)} outcomes, fewer than the "
            f"largest lottery size {sizes[-1]}"
        )
    if min_percent < 1 or min_percent * sizes[-1] > 100:
        raise GeneratorError(
            f"lottery_outcomes: min_percent {min_percent} must be >= 1 and leave room for "
            f"{sizes[-1]} components"
        )
    if n_lotteries < 1:
        raise GeneratorError(f"lottery_outcomes: n_lotteries must be >= 1, got {n_lotteries}")
    rng = np.random.default_rng(seed)
    outcomes: list[Outcome] = []
    seen: set[tuple[tuple[int, int], ...]] = set()
    width = max(3, len(str(n_lotteries)))
    attempts = 0
    while len(outcomes) < n_lotteries:
        attempts += 1
        if attempts > 100 * n_lotteries:
            raise GeneratorError(
                f"lottery_outcomes: could not make {n_lotteries} distinct lotteries from "
                f"{len(base)} base outcomes"
            )
        k = int(rng.choice(sizes))
        idx = rng.choice(len(base), size=k, replace=False)
        percents = rng.multinomial(100 - k * min_percent, rng.dirichlet(np.ones(k))) + min_percent
        key = tuple(sorted(zip(idx.tolist(), percents.tolist(), strict=True)))
        if key in seen:
            continue
        seen.add(key)
        parts = [base.outcomes[i] for i in idx]
        lines = " ".join(
            f"With probability {p}%: {o.text}" for o, p in zip(parts, percents, strict=True)
        )
        outcomes.append(
            Outcome(
                f"{id_prefix}-{len(outcomes) + 1:0{width}d}",
                f"One of the following happens, decided by chance. {lines}",
                {
                    "kind": "lottery",
                    "components": [o.id for o in parts],
                    "probs": [int(p) / 100 for p in percents],
                },
            )
        )
    return build_set(
        f"lotteries-{base.name}",
        outcomes,
        f"{n_lotteries} lotteries over outcomes of {base.name!r}",
        f"generated: lottery_outcomes(seed={seed})",
    )


def implicit_event_outcomes() -> OutcomeSet:
    """Uncertain events and the sub-outcomes they resolve into (package data).

    Event outcomes have ``kind: event``, ``components`` (sub-outcome ids) and ``probs``;
    sub-outcomes have ``kind: sub_outcome`` and ``event`` (the event id). Ids are
    ``ev-<event>`` and ``ev-<event>-<sub>``.
    """
    data = load_data("implicit_events.yaml")
    outcomes: list[Outcome] = []
    for event in data.get("events") or []:
        eid = f"ev-{event['id']}"
        subs = event.get("outcomes") or []
        if not 2 <= len(subs) <= 4:
            raise GeneratorError(f"implicit event {eid!r}: needs 2 to 4 sub-outcomes")
        probs = [parse_probability(s["p"], f"implicit event {eid!r}") for s in subs]
        check_total(probs, f"implicit event {eid!r}")
        sub_ids = [f"{eid}-{s['id']}" for s in subs]
        outcomes.append(
            Outcome(
                eid,
                str(event["text"]),
                {"kind": "event", "components": sub_ids, "probs": [float(p) for p in probs]},
            )
        )
        outcomes.extend(
            Outcome(sid, str(s["text"]), {"kind": "sub_outcome", "event": eid})
            for sid, s in zip(sub_ids, subs, strict=True)
        )
    return build_set(
        str(data.get("name", "implicit_events")),
        outcomes,
        str(data.get("description", "")),
        str(data_path("implicit_events.yaml")),
    )
