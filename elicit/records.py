"""Scorer measurements → rows of the ``comparisons`` table (docs/architecture.md, "Where each table comes from")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from elicit.scorers.base import Measurements, QueryBatch
from storage.schemas import to_table


@dataclass(frozen=True)
class RowContext:
    """What every row of a shard shares."""

    run_id: str
    model: str
    round: int
    shard: int
    template_id: str
    mode: str


def comparison_rows(
    ctx: RowContext,
    batch: QueryBatch,
    orientation: np.ndarray,
    measurements: Measurements,
    outcome_ids: pa.Array,
) -> pa.Table:
    """The comparisons rows of one scored shard, in query order.

    Args:
        ctx: shared identifiers.
        batch: the queries (indices into ``outcome_ids``).
        orientation: 0 where the lower-indexed outcome was shown first, else 1; shape (n,).
        measurements: the scorer's output for ``batch``.
        outcome_ids: outcome ids as an Arrow string array (indexed by the batch's indices).
    """
    n = len(batch)
    if len(measurements) != n:
        raise ValueError(f"scorer returned {len(measurements)} measurements for {n} queries")
    m = measurements
    return to_table(
        "comparisons",
        {
            "run_id": ctx.run_id,
            "model": ctx.model,
            "round": ctx.round,
            "shard": ctx.shard,
            "pair_id": batch.pair_id,
            "outcome_a": outcome_ids.take(pa.array(batch.a_idx)),
            "outcome_b": outcome_ids.take(pa.array(batch.b_idx)),
            "orientation": orientation,
            "template_id": ctx.template_id,
            "mode": ctx.mode,
            "p_a": m.p_a,
            "p_b": m.p_b,
            "lp_a": np.where(np.isfinite(m.lp_a), m.lp_a, np.nan) if m.lp_a is not None else None,
            "lp_b": np.where(np.isfinite(m.lp_b), m.lp_b, np.nan) if m.lp_b is not None else None,
            "mass": m.mass,
            "n_a": m.n_a,
            "n_b": m.n_b,
            "n_unparsed": m.n_unparsed,
            "response": m.response,
            "error": m.error,
            "latency_ms": m.latency_ms,
            "created_at": dt.datetime.now(dt.UTC),
        },
        num_rows=n,
    )
