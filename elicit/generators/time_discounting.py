"""Money-now-versus-later pairs for the time-discounting analysis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from elicit.generators._common import (
    GeneratorError,
    amount_id,
    build_set,
    format_money,
)
from elicit.outcomes import Outcome, OutcomeSet

DEFAULT_DELAYS_MONTHS = (1, 3, 6, 12, 24, 36, 48, 60)
"""Delays (months) of the later option in the time-discounting grid."""


def _three_significant(x: float) -> int:
    return int(float(f"{x:.3g}"))


def time_discounting_pairs(
    delays: Sequence[int] = DEFAULT_DELAYS_MONTHS,
    amounts: Sequence[float] | None = None,
    *,
    base_amount: float = 1000,
    n_amounts: int = 30,
    amount_range: tuple[float, float] = (500, 30_000),
    id_prefix: str = "td",
) -> tuple[OutcomeSet, list[dict[str, Any]]]:
    """ "$B now" versus "$X in t months" outcomes and the pairs to ask.

    Args:
        delays: delays t in months (>= 1).
        amounts: amounts X of the later option; default ``n_amounts`` geometric steps over
            ``amount_range``, rounded to three significant figures.
        base_amount: the immediate amount B.
        n_amounts: number of geometric steps when ``amounts`` is omitted.
        amount_range: (smallest, largest) amount when ``amounts`` is omitted.
        id_prefix: ids are ``<prefix>-now`` and ``<prefix>-<t>m-<X>``.

    Returns:
        (outcome set, pairs). Outcomes have attributes ``kind`` (``discount_now`` or
        ``discount_later``), ``amount`` and ``delay_months``. Each pair is a dict with
        ``outcome_a`` (now), ``outcome_b`` (later), ``delay_months``, ``amount`` and
        ``multiplier`` (X / B); ask both orders as usual.
    """
    if amounts is None:
        lo, hi = amount_range
        amounts = [_three_significant(x) for x in np.geomspace(lo, hi, n_amounts)]
    xs = sorted(set(amounts))
    ts = sorted(set(int(t) for t in delays))
    if not xs or min(xs) <= 0 or not ts or min(ts) < 1 or base_amount <= 0:
        raise GeneratorError(
            "time_discounting_pairs: amounts and base_amount must be > 0 and delays >= 1 month"
        )
    now = Outcome(
        f"{id_prefix}-now",
        f"You are paid {format_money(base_amount)} today.",
        {"kind": "discount_now", "amount": base_amount, "delay_months": 0},
    )
    outcomes = [now]
    pairs = []
    for t in ts:
        when = "in 1 month's time" if t == 1 else f"in {t} months' time"
        for x in xs:
            later = Outcome(
                f"{id_prefix}-{t}m-{amount_id(x)}",
                f"You are paid {format_money(x)} {when}.",
                {"kind": "discount_later", "amount": x, "delay_months": t},
            )
            outcomes.append(later)
            pairs.append(
                {
                    "outcome_a": now.id,
                    "outcome_b": later.id,
                    "delay_months": t,
                    "amount": x,
                    "multiplier": x / base_amount,
                }
            )
    out = build_set(
        "time_discounting",
        outcomes,
        f"{format_money(base_amount)} now versus {len(xs)} amounts at {len(ts)} delays",
        "generated: time_discounting_pairs",
    )
    return out, pairs
