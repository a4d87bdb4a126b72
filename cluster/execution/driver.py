"""The run driver: cut a round's prompts into shards and score them on a pool of replicas.

A round is a set of oriented prompts (integer arrays). The driver cuts it into shards, skips
shards whose part file already exists (resume), starts a pool of replica actors (one engine
each; a replica that spans several GPUs gets a placement group), hands shards to replicas as
they free up (a couple in flight per replica so engines never idle), and keeps only counters:
rows go from replicas straight to Parquet.

Placement (``cluster.execution.placement``): a replica with several GPUs gets a STRICT_PACK placement
group (its GPUs on one node, tensor parallel inside); replicas are data parallel.

Failures (docs/architecture.md, "The fault model"): a bad answer is a row with ``error`` set. A replica that dies is
restarted, not dropped: Ray restarts the actor (or, when Ray gives it up, the driver creates a
new one) while every shard it held goes back to the queue for the replicas that are *ready*;
nothing is sent to a replica until it answers again. A death counts once: against the replica
(:data:`MAX_REPLICA_FAILURES` deaths in a row, without a finished shard in between, retire it)
and against the one shard it was executing (a shard that took down ``max_shard_retries`` + 1
replicas stops the run); shards merely queued behind it are not blamed. An engine that cannot
start, a scorer that gives up (error budget) or a pool with no replica left stops the run with a
clear :class:`cluster.errors.RunFailed`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cluster.errors import RunFailed
from cluster.execution.progress import Progress, Style
from cluster.execution.replica import Replica, ReplicaSetup
from elicit.budget import over_budget
from elicit.design import OrientedPrompts
from storage import RunLayout

logger = logging.getLogger(__name__)

IN_FLIGHT_PER_REPLICA = 2
READY_TIMEOUT_S = 1800.0
#: Deaths in a row (no shard finished in between) after which a replica is retired for good.
MAX_REPLICA_FAILURES = 3
#: Replica states: taking shards, coming back after a death, retired.
READY, RESTARTING, DEAD = "ready", "restarting", "dead"


@dataclass
class RoundResult:
    """Counters of one round of one model."""

    model: str
    round: int
    prompts: int = 0
    shards_total: int = 0
    shards_skipped: int = 0
    shards_scored: int = 0
    rows_written: int = 0
    errors: int = 0
    retries: int = 0
    seconds: float = 0.0
    replica_pids: set[int] = field(default_factory=set)

    @property
    def prompts_per_s(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0


def cut_shards(prompts: OrientedPrompts, shard_size: int) -> list[slice]:
    """Contiguous shards of at most ``shard_size`` prompts (prompts are already prefix-sorted)."""
    n = len(prompts)
    return [slice(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


class ReplicaPool:
    """Replica actors for one model; created lazily, reused across rounds."""

    def __init__(
        self,
        setup: ReplicaSetup,
        *,
        replicas: int,
        num_cpus: float,
        gpus_per_replica: float,
        max_failures: int = MAX_REPLICA_FAILURES,
        placement_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        import ray

        self.ray = ray
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            # Ray restarts a dead replica for as long as the driver wants it; the driver retires
            # it after `max_failures` deaths in a row (run_round).
            "max_restarts": -1,
            "max_task_retries": 0,  # the driver re-queues shards itself, to any replica
        }
        env_vars = forwarded_env(setup.root)
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        self.model = setup.model.get("name", "?")
        self.placement_groups: list[Any] = []
        if gpus_per_replica > 1:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            from cluster.execution import placement

            # Every replica's GPUs on one node, placed before any engine starts, so a pool that
            # does not fit fails with a message instead of engines waiting for GPUs forever.
            self.placement_groups = placement.create_groups(replicas, gpus_per_replica, num_cpus)
            try:
                placement.wait_placed(
                    ray,
                    self.placement_groups,
                    model=self.model,
                    gpus_per_replica=gpus_per_replica,
                    timeout_s=placement_timeout_s,
                )
            except BaseException:
                placement.remove_groups(self.placement_groups)
                raise
        self._actor_cls: Any = ray.remote(Replica)
        self._setup = setup
        self._options: list[dict[str, Any]] = []
        for pg in self.placement_groups or [None] * replicas:
            opts = dict(options)
            if pg is not None:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_capture_child_tasks=True
                )
                opts["num_gpus"] = 0
                opts["num_cpus"] = 0
            else:
                opts["num_gpus"] = gpus_per_replica
            self._options.append(opts)
        self.actors: list[Any] = [self._actor_cls.options(**o).remote(setup) for o in self._options]
        self.max_failures = max_failures
        self.ready_timeout_s = READY_TIMEOUT_S
        self.pids: set[int] = set()  # every replica process that ever served (restarts included)
        self.state = [READY] * len(self.actors)
        self.failures = [0] * len(self.actors)  # deaths in a row, per replica
        self.deaths = 0
        self.probes: dict[Any, int] = {}  # ready() call on a restarting replica -> its index
        self.reprobe_at: dict[int, float] = {}  # replica -> when to ask it again
        self.restarting_since = [0.0] * len(self.actors)

    def ready_replicas(self) -> list[int]:
        return [r for r, st in enumerate(self.state) if st == READY]

    def died(self, r: int, cause: str) -> None:
        """Replica ``r`` died: count it once and wait for it to come back (or retire it)."""
        self.deaths += 1
        self.failures[r] += 1
        if self.failures[r] >= self.max_failures:
            self.retire(r)
            logger.warning(
                "model %s: replica %d died %d times in a row; retired (last cause: %s)",
                self.model,
                r,
                self.failures[r],
                cause,
            )
            return
        self.state[r] = RESTARTING
        self.restarting_since[r] = time.monotonic()
        self.probes[self.actors[r].ready.remote()] = r

    def retire(self, r: int) -> None:
        self.state[r] = DEAD
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[r], no_restart=True)

    def probe_answered(self, ref: Any) -> None:
        """A restarting replica answered ``ready()``: take it back, or recreate it."""
        r = self.probes.pop(ref)
        if self.state[r] != RESTARTING:
            return
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            self.reprobe_at[r] = time.monotonic() + 0.25  # restarting still: ask again soon
            return
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as exc:
            # Ray gave the actor up (or its engine failed to load again): a new actor, counted
            # as another death in a row.
            logger.warning("model %s: replica %d did not restart: %s", self.model, r, _cause(exc))
            self.failures[r] += 1
            if self.failures[r] >= self.max_failures:
                self.retire(r)
                return
            with contextlib.suppress(Exception):
                self.ray.kill(self.actors[r], no_restart=True)
            self.actors[r] = self._actor_cls.options(**self._options[r]).remote(self._setup)
            self.probes[self.actors[r].ready.remote()] = r
            return
        self.pids.add(info["pid"])
        self.state[r] = READY
        logger.warning("model %s: replica %d is back (pid %d)", self.model, r, info["pid"])

    def send_due_probes(self) -> float:
        """Ask again the restarting replicas that are due; returns seconds to the next one."""
        now = time.monotonic()
        for r, at in list(self.reprobe_at.items()):
            if at <= now:
                del self.reprobe_at[r]
                if self.state[r] == RESTARTING:
                    self.probes[self.actors[r].ready.remote()] = r
        return min((at - now for at in self.reprobe_at.values()), default=5.0)

    def stalled(self) -> bool:
        """No replica ready and every restarting one has been away longer than allowed."""
        if self.ready_replicas():
            return False
        now = time.monotonic()
        return all(
            now - self.restarting_since[r] > self.ready_timeout_s
            for r, st in enumerate(self.state)
            if st == RESTARTING
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until every engine loaded; a failed start is a clear error, not a hang."""
        refs = [a.ready.remote() for a in self.actors]
        try:
            infos = self.ray.get(refs, timeout=timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            raise RunFailed(
                f"model {self.model!r}: replicas did not start within {timeout_s:.0f} s; the "
                "cluster may lack the resources asked for (check gpus_per_replica, replicas)"
            ) from None
        except self.ray.exceptions.RayActorError as exc:
            raise RunFailed(
                f"model {self.model!r}: the engine could not start: {_cause(exc)}"
            ) from None
        self.pids = {info["pid"] for info in infos}

    def shutdown(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                self.ray.kill(actor)
        if self.placement_groups:
            from cluster.execution.placement import remove_groups

            remove_groups(self.placement_groups)
            self.placement_groups = []
        self.actors = []


#: Environment the driver passes on to its replicas: the fault-injection testing hook, and, for
#: an ``s3://`` root, the storage settings the driver checked the root with, so replicas write
#: where the driver can read. Never a credential: Ray writes a runtime_env, values included,
#: into its session logs (``runtime_env_agent.log``, world-readable). Replicas of a private
#: local Ray inherit the driver's environment (its raylet is started from this process); on a
#: cluster they read credentials from the nodes' own environment (the pods' Secret).
FORWARDED_ENV = ("VALUESCOPE_FAULTS",)
FORWARDED_S3_ENV = (
    "VALUESCOPE_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


def forwarded_env(root: str) -> dict[str, str]:
    """Variables of this process that replicas of a run writing to ``root`` should see."""
    names = FORWARDED_ENV + (FORWARDED_S3_ENV if root.startswith("s3://") else ())
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def _cause(exc: BaseException) -> str:
    """The innermost meaningful message of a Ray error."""
    cause = getattr(exc, "cause", None) or getattr(exc, "__cause__", None)
    text = str(cause if cause is not None else exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def run_round(
    pool: ReplicaPool,
    layout: RunLayout,
    model: str,
    round_: int,
    prompts: OrientedPrompts,
    *,
    shard_size: int,
    max_shard_retries: int = 3,
    error_budget: float = 1.0,
    progress: Style = "auto",
) -> RoundResult:
    """Score every prompt of a round exactly once, resuming from existing part files."""
    ray = pool.ray
    result = RoundResult(model=model, round=round_, prompts=len(prompts))
    shards = cut_shards(prompts, shard_size)
    result.shards_total = len(shards)
    done = layout.done_shards(model, round_)
    pending = deque(i for i in range(len(shards)) if i not in done)
    result.shards_skipped = len(shards) - len(pending)
    skipped_prompts = sum(shards[i].stop - shards[i].start for i in done if i < len(shards))
    attempts = dict.fromkeys(pending, 0)
    inflight: dict[Any, tuple[int, int]] = {}  # ref -> (replica index, shard), in send order
    load = [0] * len(pool.actors)
    start = time.perf_counter()
    label = f"{model} round {round_}"
    with Progress(label, len(prompts), progress) as bar:
        bar.advance(skipped_prompts)
        while pending or inflight:
            for r in pool.ready_replicas():
                actor = pool.actors[r]
                while pending and load[r] < IN_FLIGHT_PER_REPLICA:
                    shard = pending.popleft()
                    sl = shards[shard]
                    ref = actor.run_shard.remote(
                        round_,
                        shard,
                        prompts.pair_id[sl],
                        prompts.a_idx[sl],
                        prompts.b_idx[sl],
                        prompts.orientation[sl],
                    )
                    inflight[ref] = (r, shard)
                    load[r] += 1
            wait_s = min(5.0, max(0.05, pool.send_due_probes()))
            if not inflight and not pool.probes and not pool.reprobe_at:
                raise RunFailed(
                    f"{label}: every replica was retired after {pool.max_failures} deaths in a "
                    f"row; {len(pending)} shards left (see the log for the causes)"
                )
            if not inflight and pool.stalled():
                raise RunFailed(
                    f"{label}: no replica came back within {pool.ready_timeout_s:.0f} s of "
                    f"dying; {len(pending)} shards left (the cluster may have lost the nodes "
                    "or GPUs they need)"
                )
            waiting = [*inflight, *pool.probes]
            if not waiting:  # only replicas to ask again later
                time.sleep(wait_s)
                continue
            ready, _ = ray.wait(waiting, num_returns=1, timeout=wait_s)
            for ref in ready:
                if ref in pool.probes:
                    pool.probe_answered(ref)
                    continue
                if ref not in inflight:
                    continue  # a shard already re-queued when its replica died
                r, shard = inflight[ref]
                try:
                    stats = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    # The replica died. Everything it held goes back to the queue; only the
                    # shard it was executing (the first one sent: an actor runs its calls in
                    # order) is blamed, once, and it goes to the back: the shards queued behind
                    # it were never started, and a shard retried at once would be the one in
                    # hand at the next unrelated death (a preemption, an OOM elsewhere) too.
                    mine = [ref2 for ref2, (r2, _) in inflight.items() if r2 == r]
                    held = [inflight.pop(ref2)[1] for ref2 in mine]
                    load[r] = 0
                    shard = held[0]
                    attempts[shard] += 1
                    result.retries += 1
                    cause = _cause(exc)
                    logger.warning(
                        "%s: replica %d died on shard %d (attempt %d; %d shards re-queued): %s",
                        label,
                        r,
                        shard,
                        attempts[shard],
                        len(held),
                        cause,
                    )
                    if attempts[shard] > max_shard_retries:
                        raise RunFailed(
                            f"{label}: shard {shard} failed {attempts[shard]} times as its replica "
                            f"died; last cause: {cause}"
                        ) from None
                    pending.extendleft(reversed(held[1:]))
                    pending.append(shard)
                    pool.died(r, cause)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    raise RunFailed(f"{label}: shard {shard} failed: {_cause(exc)}") from None
                del inflight[ref]
                load[r] -= 1
                pool.failures[r] = 0
                if stats["skipped"]:
                    result.shards_skipped += 1
                else:
                    result.shards_scored += 1
                    result.rows_written += stats["rows"]
                    result.errors += stats["errors"]
                bar.advance(stats["rows"], stats["errors"])
                scored = result.rows_written
                if over_budget(result.errors, scored, error_budget):
                    raise RunFailed(
                        f"{label}: {result.errors} of {scored} prompts failed "
                        f"({result.errors / scored:.0%}), over the error budget of "
                        f"{error_budget:.0%}; see the error column of comparisons"
                    )
    result.seconds = time.perf_counter() - start
    result.replica_pids = set(pool.pids)
    return result


def concat_prompts(parts: list[OrientedPrompts]) -> OrientedPrompts:
    """Join oriented prompts (e.g. a round's new pairs and its held-out pairs)."""
    return OrientedPrompts(
        np.concatenate([p.pair_id for p in parts]),
        np.concatenate([p.a_idx for p in parts]),
        np.concatenate([p.b_idx for p in parts]),
        np.concatenate([p.orientation for p in parts]),
    )
