"""Where replicas go: GPU bundles, placement groups, and how many replicas fit.

A replica is one model engine. When it holds several GPUs it gets a placement group of one
bundle per GPU with the ``STRICT_PACK`` strategy, so all of its GPUs sit on one node (tensor
parallelism inside a replica talks over NVLink/PCIe, never the network). The replica actor
itself reserves nothing and captures its group, so the engine's tensor-parallel workers (vLLM's
Ray executor puts one in each bundle) land on exactly those GPUs. Replicas are data parallel:
each has its own group, placed independently, and the driver hands shards to all of them.

``replicas: auto`` counts per node, because a group cannot span nodes:
``Σ_nodes ⌊min(free GPUs / GPUs per replica, free CPUs / CPUs per replica)⌋``.

A pool that can never fit the cluster as it is (a local Ray has no autoscaler) is refused
before anything starts; on a cluster that may grow, the driver waits for placement up to a
timeout and then says what was placed, what is missing and what to change.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cluster.errors import RunFailed

logger = logging.getLogger(__name__)

#: How long a pool waits for its placement groups on a cluster that may scale up.
DEFAULT_PLACEMENT_TIMEOUT_S = 1800.0
PLACEMENT_TIMEOUT_ENV = "VALUESCOPE_PLACEMENT_TIMEOUT_S"
STRATEGY = "STRICT_PACK"


class PlacementError(RunFailed):
    """A model's replicas do not fit the cluster, or were not placed in time."""


@dataclass(frozen=True)
class Node:
    """Resources of one alive Ray node (``GPU``, ``CPU`` and custom resources)."""

    node_id: str
    total: Mapping[str, float]
    free: Mapping[str, float]


def placement_timeout_s() -> float:
    """The placement timeout: ``$VALUESCOPE_PLACEMENT_TIMEOUT_S`` or 30 minutes (autoscaling
    clusters add GPU nodes in minutes, not seconds)."""
    raw = os.environ.get(PLACEMENT_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_PLACEMENT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise PlacementError(
            f"{PLACEMENT_TIMEOUT_ENV}={raw!r} is not a number of seconds"
        ) from None
    if value <= 0:
        raise PlacementError(f"{PLACEMENT_TIMEOUT_ENV}={raw!r} must be positive")
    return value


def cluster_nodes(ray: Any) -> list[Node]:
    """Alive nodes with their total and currently free resources."""
    try:
        from ray._private.state import available_resources_per_node

        free_by_node: dict[str, dict[str, float]] = available_resources_per_node()
    except Exception:  # private API; without it, assume an idle cluster
        free_by_node = {}
    nodes = []
    for info in ray.nodes():
        if not info.get("Alive", False):
            continue
        node_id = info["NodeID"]
        total = {k: float(v) for k, v in info.get("Resources", {}).items()}
        free = {k: float(v) for k, v in free_by_node.get(node_id, total).items()}
        nodes.append(Node(node_id, total, free))
    return nodes


def replicas_that_fit(
    nodes: Sequence[Mapping[str, float]], gpus_per_replica: float, cpus_per_replica: float
) -> int:
    """How many replicas fit on these nodes (each node's resources as a mapping).

    A replica needs ``gpus_per_replica`` GPUs and ``cpus_per_replica`` CPUs on one node.
    """
    count = 0
    for res in nodes:
        fits = math.inf
        if gpus_per_replica > 0:
            fits = min(fits, math.floor(res.get("GPU", 0.0) / gpus_per_replica + 1e-9))
        if cpus_per_replica > 0:
            fits = min(fits, math.floor(res.get("CPU", 0.0) / cpus_per_replica + 1e-9))
        count += 0 if math.isinf(fits) else int(fits)
    return count


def bundles(gpus_per_replica: float, num_cpus: float) -> list[dict[str, float]]:
    """The placement-group bundles of one multi-GPU replica: one GPU each, CPUs spread."""
    n = int(gpus_per_replica)
    if n != gpus_per_replica or n < 2:
        raise PlacementError(
            f"a placement group needs a whole number of GPUs ≥ 2 per replica, got "
            f"{gpus_per_replica}; use 1 or a fraction for a replica on part of one GPU"
        )
    return [{"GPU": 1.0, "CPU": num_cpus / n} for _ in range(n)]


def describe(nodes: Sequence[Node]) -> str:
    """One line on the cluster's GPUs and CPUs (total and free, largest node)."""
    gpus = sum(n.total.get("GPU", 0.0) for n in nodes)
    free_gpus = sum(n.free.get("GPU", 0.0) for n in nodes)
    cpus = sum(n.total.get("CPU", 0.0) for n in nodes)
    free_cpus = sum(n.free.get("CPU", 0.0) for n in nodes)
    largest = max((n.total.get("GPU", 0.0) for n in nodes), default=0.0)
    return (
        f"the cluster has {gpus:g} GPUs ({free_gpus:g} free, at most {largest:g} on one node) "
        f"and {cpus:g} CPUs ({free_cpus:g} free) on {len(nodes)} node(s)"
    )


def check_fits(
    model: str,
    nodes: Sequence[Node],
    *,
    replicas: int,
    gpus_per_replica: float,
    cpus_per_replica: float,
) -> None:
    """Refuse a pool that can never fit these nodes, even with every resource free.

    For a cluster that cannot grow (a local Ray). On an autoscaling cluster, call
    :func:`wait_placed` instead.
    """
    fits = replicas_that_fit([n.total for n in nodes], gpus_per_replica, cpus_per_replica)
    if fits >= replicas:
        return
    need = f"{gpus_per_replica:g} GPU(s) and {cpus_per_replica:g} CPU(s) on one node"
    raise PlacementError(
        f"model {model!r}: {replicas} replica(s) asked, each needing {need}, but at most "
        f"{fits} fit: {describe(nodes)}; lower `replicas` (or use `replicas: auto`), lower "
        "`gpus_per_replica`, or run on a larger cluster"
    )


def create_groups(replicas: int, gpus_per_replica: float, num_cpus: float) -> list[Any]:
    """One STRICT_PACK placement group per replica (not waited for)."""
    from ray.util.placement_group import placement_group

    spec = bundles(gpus_per_replica, num_cpus)
    return [placement_group(spec, strategy=STRATEGY) for _ in range(replicas)]


def remove_groups(groups: Sequence[Any]) -> None:
    """Release placement groups (and the resources they reserved)."""
    from ray.util.placement_group import remove_placement_group

    for group in groups:
        try:
            remove_placement_group(group)
        except Exception:  # already removed, or the cluster went away
            logger.debug("placement group %s already gone", group)


def wait_placed(
    ray: Any,
    groups: Sequence[Any],
    *,
    model: str,
    gpus_per_replica: float,
    timeout_s: float,
    log_every_s: float = 60.0,
) -> None:
    """Block until every group is placed; a clear :class:`PlacementError` after ``timeout_s``.

    Progress is logged every ``log_every_s`` so a run waiting for an autoscaler says so.
    """
    pending = {group.ready(): i for i, group in enumerate(groups)}
    deadline = time.monotonic() + timeout_s
    next_log = time.monotonic() + log_every_s
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=min(left, 5.0))
        for ref in ready:
            pending.pop(ref)
        if pending and time.monotonic() >= next_log:
            next_log = time.monotonic() + log_every_s
            logger.warning(
                "model %s: %d of %d replicas placed; waiting for resources (%s)",
                model,
                len(groups) - len(pending),
                len(groups),
                describe(cluster_nodes(ray)),
            )
    if not pending:
        return
    placed = len(groups) - len(pending)
    raise PlacementError(
        f"model {model!r}: only {placed} of {len(groups)} replicas could be placed within "
        f"{timeout_s:.0f} s; each needs {gpus_per_replica:g} GPUs on one node ({STRATEGY}); "
        f"{describe(cluster_nodes(ray))}. Lower `replicas` (or use `replicas: auto`), free "
        f"GPUs held by other work, or add GPU nodes (an autoscaling cluster may need a longer "
        f"{PLACEMENT_TIMEOUT_ENV})"
    )


def group_bundle_nodes(groups: Sequence[Any]) -> list[list[str]]:
    """Node id of every bundle of every group (for checks and diagnostics)."""
    from ray.util.placement_group import placement_group_table

    out = []
    for group in groups:
        table = placement_group_table(group)
        by_index = table.get("bundles_to_node_id", {})
        out.append([by_index[i] for i in sorted(by_index)])
    return out
