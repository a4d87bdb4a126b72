"""Starting or joining Ray.

Local mode (no address) keeps Ray on 127.0.0.1: Ray 2.60 otherwise binds the node to the
machine's outward address. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import time, so
the variable is set before the first ``import ray``; the node address is pinned as well.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    quiet: bool = True,
    log_to_driver: bool = True,
) -> Any:
    """Start a local Ray (``address=None``) or join a cluster; returns the ``ray`` module.

    Idempotent: a process that already initialised Ray keeps its connection.
    ``log_to_driver=False`` stops Ray relaying its workers' standard output and error to this
    process (they stay in Ray's session logs) and keeps Ray's notices below errors quiet.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.INFO
        if not quiet
        else (logging.WARNING if log_to_driver else logging.ERROR),
        "log_to_driver": log_to_driver,
        "ignore_reinit_error": True,
    }
    if address is None:
        kwargs["_node_ip_address"] = "127.0.0.1"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        logger.info("starting a local Ray on 127.0.0.1")
    else:
        kwargs["address"] = address
        logger.info("joining Ray at %s", address)
    ray.init(**kwargs)
    return ray
