"""``valuescope run``: rounds of elicit → fit → acquire, then the final fit and its tables.

Round 0 asks the held-out pairs (fixed up front from the spec's size and seed, never trained on
or acquired); round 1 asks the design's pairs (`full`, `pairs`) or the random 2-regular start
graph (`active`); each later active round fits the utilities so far and asks the pairs the
acquisition picks, until the budget is spent. The pairs of every round are written to
``round_pairs`` before the round is asked, so a rerun of an interrupted run asks exactly the
same questions, and rounds whose part files all exist are never asked again (no model is even
loaded when nothing is left to ask).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.execution.driver import ReplicaPool, RoundResult
from cluster.pipeline import fitting
from cluster.pipeline.context import (
    RunContext,
    elicit_round,
    open_pool,
    pinned_shard_size,
    prepare,
)
from cluster.pipeline.events import Listener, RoundFitted, ignore
from cluster.spec import RunSpec
from cluster.store import HOLDOUT_ROUND
from elicit.config import ModelConfig
from elicit.design import OrientedPrompts, full_graph, load_pairs, orient, pair_ids, split_pair_ids
from fit.errors import EmptyDataError
from fit.result import FitResult
from storage.schemas import to_table
from storage.writer import read_table, write_table

logger = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """What a run produced for one model."""

    model: str
    rounds: list[RoundResult] = field(default_factory=list)
    fit: dict[str, Any] = field(default_factory=dict)
    utilities: pa.Table | None = None
    queried_pairs: int = 0
    holdout_pairs: int = 0


def holdout_size(n: int, requested: int | None) -> int:
    """Held-out unordered pairs: the spec's size, else min(5 % of all pairs, 1000)."""
    total = n * (n - 1) // 2
    size = min(max(1, total // 20), 1000) if requested is None else requested
    return min(size, total // 2)


def budget_pairs(n: int, requested: int | None, available: int) -> int:
    """Pairs to ask for training: the spec's budget, else floor(2·N·log2 N); at most all."""
    default = math.floor(2 * n * math.log2(n)) if n > 1 else 0
    return min(requested if requested is not None else default, available)


class _Planner:
    """Chooses and records the pairs of each round of one model."""

    def __init__(self, ctx: RunContext, model: ModelConfig) -> None:
        self.ctx = ctx
        self.model = model
        self.n = ctx.n
        self.design = ctx.spec.design

    def stored(self, round_: int) -> np.ndarray | None:
        path = self.ctx.layout.round_pairs(self.model.name, round_)
        if not self.ctx.layout.root.exists(path):
            return None
        return np.asarray(read_table(self.ctx.layout.root, path).column("pair_id").to_numpy())

    def record(self, round_: int, ids: np.ndarray, role: str) -> np.ndarray:
        i, j = split_pair_ids(ids, self.n)
        outcome_ids = np.array(self.ctx.outcomes.ids, dtype=object)
        table = to_table(
            "round_pairs",
            {
                "run_id": self.ctx.run_id,
                "model": self.model.name,
                "round": round_,
                "pair_id": ids,
                "outcome_i": outcome_ids[i],
                "outcome_j": outcome_ids[j],
                "role": role,
            },
            num_rows=len(ids),
        )
        write_table(
            self.ctx.layout.root,
            self.ctx.layout.round_pairs(self.model.name, round_),
            "round_pairs",
            table,
        )
        return ids

    def holdout(self) -> np.ndarray:
        found = self.stored(HOLDOUT_ROUND)
        if found is not None:
            return found
        size = holdout_size(self.n, self.design.holdout.size)
        if self.design.kind == "pairs" or size == 0:
            return self.record(HOLDOUT_ROUND, np.zeros(0, np.int64), "holdout")
        ids = fitting.holdout_pair_ids(self.n, size, self.design.holdout.seed)
        return self.record(HOLDOUT_ROUND, ids, "holdout")

    def first(self, holdout: np.ndarray) -> np.ndarray:
        found = self.stored(1)
        if found is not None:
            return found
        if self.design.kind == "pairs":
            assert self.design.pairs_file is not None
            i, j = load_pairs(self.design.pairs_file, self.ctx.outcomes.index())
            return self.record(1, pair_ids(i, j, self.n), "design")
        if self.design.kind == "full":
            i, j = full_graph(self.n)
            ids = pair_ids(i, j, self.n)
            return self.record(1, ids[~np.isin(ids, holdout)], "design")
        ids = fitting.start_graph(self.n, holdout, self.design.seed)
        return self.record(1, ids, "start")

    def next(
        self,
        round_: int,
        asked: np.ndarray,
        holdout: np.ndarray,
        budget: int,
        result: FitResult | None = None,
    ) -> np.ndarray | None:
        found = self.stored(round_)
        if found is not None:
            return found
        want = min(self.design.per_round, budget - len(asked))
        if want <= 0:
            return None
        ids = fitting.acquire(self.ctx, self.model, round_, asked, holdout, want, result)
        if len(ids) == 0:
            return None
        return self.record(round_, ids, "acquired")


def _prompts(ids: np.ndarray, n: int, both_orders: bool) -> OrientedPrompts:
    i, j = split_pair_ids(ids, n)
    return orient(i, j, n, both_orders=both_orders)


class _Rounds:
    """Runs rounds for one model, opening its replica pool only when something is left to ask."""

    def __init__(self, ctx: RunContext, model: ModelConfig) -> None:
        self.ctx = ctx
        self.model = model
        self.pool: ReplicaPool | None = None
        self.results: list[RoundResult] = []

    def ask(self, round_: int, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        prompts = _prompts(ids, self.ctx.n, self.ctx.spec.prompt.both_orders)
        size = pinned_shard_size(self.ctx, self.model.name, round_)  # None: not cut yet
        done = self.ctx.layout.done_shards(self.model.name, round_) if size else set()
        shards = -(-len(prompts) // size) if size else 0
        if size and len(done) >= shards:
            entry = self.ctx.manifest.round_status(self.model.name, round_)
            entry.shards_total = entry.shards_done = shards
            entry.prompts = len(prompts)
            entry.status = "done"
            return
        if self.pool is None:
            self.pool = open_pool(self.ctx, self.model)
        self.results.append(elicit_round(self.ctx, self.pool, self.model, round_, prompts))
        self.ctx.store.refresh()  # new parts landed: the next fit reads them

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run between or inside rounds; what was stored is fitted when it can be."""

    def __init__(self, model: str, fitted: bool) -> None:
        super().__init__(f"interrupted while asking {model}")
        self.model = model
        self.fitted = fitted
        """Whether the comparisons stored so far were fitted (``valuescope show`` works)."""


def _report(ctx: RunContext, model: str, round_: int, pairs: int, held: Any) -> FitResult | None:
    """Fit the training rounds so far and hand the listener the ranking it gives (None, and no
    report, when no usable answer is stored yet)."""
    from fit.metrics import accuracy

    try:
        result = fitting.fit_so_far(ctx, model, round_)
    except EmptyDataError:
        return None
    order = fitting.ranked(result)
    ids = ctx.outcomes.ids
    ctx.listener(
        RoundFitted(
            model=model,
            round=round_,
            pairs=pairs,
            holdout_accuracy=accuracy(result, held) if held is not None else None,
            top=[ids[k] for k in order[:REPORTED]],
            bottom=[ids[k] for k in order[-REPORTED:]] if len(order) > REPORTED else [],
        )
    )
    return result


#: Outcomes at each end of the ranking a round report carries.
REPORTED = 5


def _ask_rounds(ctx: RunContext, planner: _Planner, rounds: _Rounds) -> tuple[int, int]:
    """Ask every round of one model; returns (training pairs, held-out pairs)."""
    holdout = planner.holdout()
    rounds.ask(HOLDOUT_ROUND, holdout)
    asked = planner.first(holdout)
    rounds.ask(1, asked)
    if ctx.spec.design.kind != "active":
        return len(asked), len(holdout)
    name = planner.model.name
    held = fitting.holdout_stats(ctx, name)
    total = ctx.n * (ctx.n - 1) // 2
    budget = budget_pairs(ctx.n, ctx.spec.design.budget, total - len(holdout))
    round_ = 1
    while True:
        result = _report(ctx, name, round_, len(asked), held)
        if len(asked) >= budget:
            break
        new = planner.next(round_ + 1, asked, holdout, budget, result)
        if new is None:
            break
        round_ += 1
        rounds.ask(round_, new)
        asked = np.concatenate([asked, new])
    return len(asked), len(holdout)


def run_model(ctx: RunContext, model: ModelConfig, *, fit: bool = True) -> ModelRun:
    """All rounds and (unless ``fit`` is False) the final fit of one model.

    Ctrl-C fits what is stored so far (when anything is) and raises :class:`RunInterrupted`.
    """
    planner = _Planner(ctx, model)
    rounds = _Rounds(ctx, model)
    out = ModelRun(model=model.name)
    try:
        out.queried_pairs, out.holdout_pairs = _ask_rounds(ctx, planner, rounds)
    except KeyboardInterrupt:
        rounds.close()
        ctx.store.refresh()  # parts of the interrupted round may have landed
        fitted = False
        if fit:
            try:
                fitting.final_fit(ctx, model)
                fitted = True
            except EmptyDataError:
                pass
        raise RunInterrupted(model.name, fitted) from None
    finally:
        rounds.close()
    out.rounds = rounds.results
    if fit:
        out.fit, out.utilities = fitting.final_fit(ctx, model)
    return out


def run(
    spec: RunSpec, *, fit: bool = True, listener: Listener = ignore, verbose: bool = False
) -> list[ModelRun]:
    """Run a spec end to end: every model's rounds, then its final fit and tables.

    With ``fit=False`` (``valuescope elicit``) only the comparisons are collected; an `active`
    design then has nothing to acquire with and asks the full graph instead. ``listener`` gets
    the run's :mod:`cluster.pipeline.events` (engines starting, each active round's ranking);
    ``verbose`` leaves the engines' own output on the terminal instead of the run's engine log.
    """
    if not fit and spec.design.kind == "active":
        spec = spec.model_copy(update={"design": spec.design.model_copy(update={"kind": "full"})})
    ctx = prepare(spec)
    ctx.listener = listener
    ctx.verbose = verbose
    results = []
    try:
        for model in spec.models:
            results.append(run_model(ctx, model, fit=fit))
    except BaseException as exc:
        ctx.manifest.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        ctx.manifest.message = str(exc)[:500]
        ctx.save_manifest()
        ctx.release()
        raise
    finally:
        ctx.store.close()
    ctx.manifest.status = "done"
    ctx.manifest.message = None
    ctx.save_manifest()
    ctx.release()
    return results


def elicit(
    spec: RunSpec, *, listener: Listener = ignore, verbose: bool = False
) -> list[RoundResult]:
    """Ask every model every pair of a single-round design (`full` or `pairs`), no fitting.

    The held-out pairs of the spec are asked too (round 0), so a later ``valuescope fit`` can
    measure held-out accuracy.
    """
    runs = run(spec, fit=False, listener=listener, verbose=verbose)
    return [r for model_run in runs for r in model_run.rounds]
