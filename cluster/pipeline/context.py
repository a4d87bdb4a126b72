"""A run's context: the validated spec, its outcomes and manifest, its replica pools and rounds.

Everything that can be checked without a model (spec, outcome sets, pair files, results root)
is checked first, so a bad input fails in a second rather than after a model has loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from cluster.errors import RunFailed
from cluster.execution import engine_logs
from cluster.execution.driver import ReplicaPool, RoundResult, run_round
from cluster.execution.replica import ReplicaSetup
from cluster.pipeline.events import EnginesStarting, Listener, ignore
from cluster.spec import RunSpec
from cluster.store import RunStore
from elicit.config import ModelConfig
from elicit.design import OrientedPrompts
from elicit.outcomes import OutcomeSet
from elicit.prompts import PromptTemplate
from storage import Root, RunLayout
from storage.manifest import Manifest, new_manifest, read_manifest, write_manifest
from storage.runlock import RunLock
from storage.schemas import to_table
from storage.writer import write_table

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """A prepared run: validated spec, outcomes, layout and manifest."""

    spec: RunSpec
    run_id: str
    layout: RunLayout
    outcomes: OutcomeSet
    template: PromptTemplate
    manifest: Manifest
    lock: RunLock | None = None
    """The run's writer lock, held from :func:`prepare` until :meth:`release`."""
    verbose: bool = False
    """Show the engines' own output instead of writing it to the run's engine log."""
    listener: Listener = field(default=ignore)
    """Called with each :mod:`cluster.pipeline.events` event."""

    @property
    def log_path(self) -> str | None:
        """The engine log of this run (None with ``verbose``)."""
        return None if self.verbose else engine_logs.log_path(self.layout)

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @cached_property
    def store(self) -> RunStore:
        """The results root's run store (one catalog connection for the whole run)."""
        return RunStore(self.layout.root)

    def release(self) -> None:
        """Give up the writer lock (after the manifest's final status is written)."""
        if self.lock is not None:
            self.lock.release()

    def save_manifest(self) -> None:
        write_manifest(self.layout, self.manifest)

    def setup_for(self, model: ModelConfig) -> ReplicaSetup:
        return ReplicaSetup(
            root=self.layout.root.uri,
            run_id=self.run_id,
            model=model.model_dump(mode="json"),
            mode=self.spec.mode.model_dump(mode="json"),
            template=self.template,
            outcome_ids=self.outcomes.ids,
            outcome_texts=self.outcomes.texts,
            log_path=self.log_path,
        )


def prepare(spec: RunSpec) -> RunContext:
    """Validate inputs, create or reopen the run, write its outcomes table and manifest.

    Reopening a run whose stored spec differs in content is refused: results of two different
    specs must not mix under one run id.
    """
    from cluster.pipeline.preflight import preflight

    outcomes = preflight(spec)  # inputs and models checked before anything is written
    template = PromptTemplate.from_config(spec.prompt, spec.mode.kind)
    run_id = spec.resolved_run_id()
    root = Root(spec.root)
    root.check_writable()
    layout = RunLayout(root, run_id)
    content = spec.content()
    simulated = any(m.scorer_kind == "simulated" for m in spec.models)
    manifest = read_manifest(layout)
    if manifest is None:
        manifest = new_manifest(run_id, content, simulated=simulated)
    elif not spec.same_content(manifest.spec):
        raise RunFailed(
            f"run {run_id!r} in {spec.root!r} was started with a different spec; "
            "use another run_id (or name), or delete the old run's folders"
        )
    lock = RunLock(layout)
    lock.acquire()  # one run, one writer: a second command on this run is refused
    try:
        manifest.status = "running"
        if not root.exists(layout.outcomes):
            write_table(root, layout.outcomes, "outcomes", outcomes_table(run_id, outcomes, spec))
        ctx = RunContext(spec, run_id, layout, outcomes, template, manifest, lock)
        ctx.save_manifest()
    except BaseException:
        lock.release()
        raise
    return ctx


def outcomes_table(run_id: str, outcomes: OutcomeSet, spec: RunSpec):
    """The run's ``outcomes`` rows; simulated runs store the agent's true utilities."""
    true_u = None
    sim = next((m for m in spec.models if m.scorer_kind == "simulated"), None)
    if sim is not None:
        from elicit.scorers.simulated import true_utilities

        true_u = true_utilities(sim, outcomes.ids)
    return to_table(
        "outcomes",
        {
            "run_id": run_id,
            "outcome_id": outcomes.ids,
            "text": outcomes.texts,
            "set": [o.attributes.get("set", outcomes.name) for o in outcomes],
            "attributes": [json.dumps(o.attributes, sort_keys=True) for o in outcomes],
            "true_utility": true_u,
        },
        num_rows=len(outcomes),
    )


def open_pool(ctx: RunContext, model: ModelConfig) -> ReplicaPool:
    """Start Ray (local unless the spec names a cluster) and the replicas of one model.

    On a local Ray (which cannot grow) a pool that can never fit is refused at once; on a
    cluster the driver waits for placement up to ``$VALUESCOPE_PLACEMENT_TIMEOUT_S``.
    """
    from cluster.execution import placement
    from cluster.execution.ray_runtime import init_ray

    ray = init_ray(ctx.spec.execution.ray_address, log_to_driver=ctx.verbose)
    cpus = ctx.spec.execution.num_cpus_per_replica
    replicas = model.replicas if isinstance(model.replicas, int) else auto_replicas(model, cpus)
    if ctx.spec.execution.ray_address is None and not os.environ.get("RAY_ADDRESS"):
        # a Ray this process started: nothing will be added to it, so refuse what cannot fit
        placement.check_fits(
            model.name,
            placement.cluster_nodes(ray),
            replicas=replicas,
            gpus_per_replica=model.gpus_per_replica,
            cpus_per_replica=cpus,
        )
    ctx.listener(EnginesStarting(model.name, replicas, ctx.log_path))
    with with_log_tail(ctx.log_path):
        pool = ReplicaPool(
            ctx.setup_for(model),
            replicas=replicas,
            num_cpus=cpus,
            gpus_per_replica=model.gpus_per_replica,
            placement_timeout_s=placement.placement_timeout_s(),
        )
        pool.wait_ready()
    return pool


@contextlib.contextmanager
def with_log_tail(log_path: str | None) -> Iterator[None]:
    """A :class:`RunFailed` raised inside carries the engine log's last lines (``log_tail``)
    and its path (``log_path``), so the CLI shows them with the error."""
    try:
        yield
    except RunFailed as exc:
        if log_path and not getattr(exc, "log_tail", None):
            exc.log_tail = engine_logs.tail(log_path)  # type: ignore[attr-defined]
            exc.log_path = log_path  # type: ignore[attr-defined]
        raise


def auto_replicas(model: ModelConfig, cpus_per_replica: float = 1.0) -> int:
    """`replicas: auto`: as many replicas as the free resources fit, counted per node (a
    replica's GPUs must share a node); at least 1."""
    import ray

    from cluster.execution.placement import cluster_nodes, replicas_that_fit

    free = [node.free for node in cluster_nodes(ray)]
    return max(1, replicas_that_fit(free, model.gpus_per_replica, cpus_per_replica))


AUTO_SHARD_MAX = 2048
"""Largest shard an unset ``shard_size`` gives (and the size rounds were cut at before it was
kept in the manifest)."""
AUTO_SHARD_MIN = 64
AUTO_SHARDS_PER_REPLICA = 4


def auto_shard_size(n_prompts: int, replicas: int) -> int:
    """Shard size for an unset ``shard_size``: about 4 shards per replica, within 64…2,048."""
    per = -(-n_prompts // (AUTO_SHARDS_PER_REPLICA * max(1, replicas)))
    return max(AUTO_SHARD_MIN, min(AUTO_SHARD_MAX, per))


def pinned_shard_size(ctx: RunContext, model: str, round_: int) -> int | None:
    """The shard size a round was cut with, when it has been cut: kept in the manifest; for a
    round started before the manifest kept it, the spec's size or the old default."""
    entry = ctx.manifest.round_status(model, round_)
    if entry.shard_size is not None:
        return entry.shard_size
    if entry.status != "created":
        return ctx.spec.execution.shard_size or AUTO_SHARD_MAX
    return None


def round_shard_size(
    ctx: RunContext, model: str, round_: int, n_prompts: int, replicas: int
) -> int:
    """Prompts per shard of a round, fixed (in the manifest) the first time the round is cut:
    part files are named by shard number, so cutting a half-done round anew would skip some
    prompts and ask others twice. A new round takes the spec's size, else
    :func:`auto_shard_size`."""
    size = pinned_shard_size(ctx, model, round_)
    if size is None:
        size = ctx.spec.execution.shard_size or auto_shard_size(n_prompts, replicas)
    ctx.manifest.round_status(model, round_).shard_size = size
    return size


def elicit_round(
    ctx: RunContext, pool: ReplicaPool, model: ModelConfig, round_: int, prompts: OrientedPrompts
) -> RoundResult:
    """Score one round of one model and record its progress in the manifest."""
    entry = ctx.manifest.round_status(model.name, round_)
    shard_size = round_shard_size(ctx, model.name, round_, len(prompts), len(pool.actors))
    entry.prompts = len(prompts)
    entry.status = "running"
    ctx.save_manifest()
    try:
        with with_log_tail(ctx.log_path):
            result = run_round(
                pool,
                ctx.layout,
                model.name,
                round_,
                prompts,
                shard_size=shard_size,
                max_shard_retries=ctx.spec.execution.max_shard_retries,
                error_budget=model.error_budget,
                progress=ctx.spec.execution.progress,
            )
    except BaseException as exc:
        entry.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        ctx.manifest.status = entry.status
        ctx.manifest.message = str(exc)[:500]
        ctx.save_manifest()
        raise
    entry.shards_total = result.shards_total
    entry.shards_done = result.shards_total
    entry.errors += result.errors
    entry.status = "done"
    ctx.save_manifest()
    return result
