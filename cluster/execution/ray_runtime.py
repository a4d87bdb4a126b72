"""Starting or joining Ray, by stated rules.

Where a run's Ray comes from (docs/cluster.md, "Which Ray a run uses"):

1. A configured address (``execution.ray_address`` in the spec, ``--ray-address`` on the CLI)
   is joined; if nothing answers there within :data:`CONNECT_TIMEOUT_S` the run stops with a
   one-line error instead of Ray's two-minute wait.
2. Otherwise ``$RAY_ADDRESS``, the same way. Inside a Ray job this is how the job's own
   cluster is found: the job server sets it for the job's driver.
3. Otherwise a private local Ray that this process starts (``address="local"``) and owns. It
   never joins a cluster registered on this machine with ``ray start`` (plain ``ray.init()``
   would: it reads the address ``ray start`` leaves in Ray's temp folder).

A private Ray is fate-shared with its driver: Ray kills its GCS and raylet when the driver
dies, but its agents wait a minute or more trying to report to the dead GCS, so a small
watchdog (:mod:`cluster.execution.reaper`) kills whatever is left of that Ray within about a
second of the driver's death, ``kill -9`` included.

Local mode keeps Ray on 127.0.0.1: Ray 2.60 otherwise binds the node to the machine's outward
address. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import time, so the variable is set
before the first ``import ray``; the node address is pinned as well.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from typing import Any

from cluster.errors import RunFailed

logger = logging.getLogger(__name__)

#: Seconds a configured Ray address has to accept a connection before the run gives up.
CONNECT_TIMEOUT_S = 5.0


def resolve_address(address: str | None) -> str | None:
    """The Ray address a run joins by the rules above (None: start a private local Ray)."""
    if address:
        return address
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return env or None


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    quiet: bool = True,
    log_to_driver: bool = True,
) -> Any:
    """Start a private local Ray or join the one the rules name; returns the ``ray`` module.

    Idempotent: a process that already initialised Ray keeps its connection.
    ``log_to_driver=False`` stops Ray relaying its workers' standard output and error to this
    process (they stay in Ray's session logs) and keeps Ray's notices below errors quiet.

    Raises:
        RunFailed: a configured address does not answer within :data:`CONNECT_TIMEOUT_S`.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = resolve_address(address)
    if target is None:
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
    if target is None:
        kwargs["address"] = "local"  # never a cluster registered by `ray start`
        kwargs["_node_ip_address"] = "127.0.0.1"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        logger.info("starting a private local Ray on 127.0.0.1")
        ray.init(**kwargs)
        start_reaper(ray)
        return ray
    where = "execution.ray_address" if address else "$RAY_ADDRESS"
    check_answers(target, where)
    kwargs["address"] = target
    logger.info("joining Ray at %s", target)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError) as exc:
        # Something accepted the connection but no Ray GCS answered within Ray's own connect
        # window (about 20 s): a proxy, another service on that port, a cluster starting up.
        raise RunFailed(
            f"{where} {target!r}: no Ray cluster answered there ({exc}); check the "
            "address and port (the GCS port, 6379 by default), or unset it for a private "
            "local Ray"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """Host and port of a GCS (``host:port``) or Ray client (``ray://host:port``) address."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_answers(address: str, where: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when nothing listens at a Ray address.

    ``auto`` is resolved the way Ray resolves it (``$RAY_ADDRESS``, else the cluster ``ray
    start`` registered on this machine); ``http(s)://`` is a job server's address, which
    ``ray.init`` cannot join.
    """
    if address.startswith(("http://", "https://")):
        raise RunFailed(
            f"{where} {address!r} is a job server (dashboard) address; runs join a cluster's "
            "GCS (host:6379, or auto inside a job) — submit it with `valuescope submit` instead"
        )
    target = address
    if address == "auto":
        from ray._private import services

        try:
            found = services.canonicalize_bootstrap_address(address)
        except ConnectionError:
            found = None
        if found is None:
            raise RunFailed(
                f"{where} 'auto': no Ray cluster found on this machine; start one with "
                "`ray start --head`, or leave ray_address unset for a private local Ray"
            )
        target = found
    hp = _host_port(target)
    if hp is None:
        raise RunFailed(
            f"{where} {address!r} is not a Ray address; give host:port (e.g. 10.0.0.5:6379), "
            "ray://host:10001 or auto"
        )
    try:
        with socket.create_connection(hp, timeout=timeout_s) as sock:
            speaks = _speaks_grpc(sock, timeout_s)
    except OSError as exc:
        timed_out = isinstance(exc, TimeoutError) or not exc.strerror
        reason = f"no answer within {timeout_s:.0f} s" if timed_out else exc.strerror
        raise RunFailed(
            f"{where} {address!r}: nothing answers at {hp[0]}:{hp[1]} ({reason}); start the "
            "cluster, fix the address, or unset it for a private local Ray"
        ) from None
    if not speaks:
        raise RunFailed(
            f"{where} {address!r}: {hp[0]}:{hp[1]} accepts connections but does not answer as a "
            f"Ray cluster (no gRPC reply within {timeout_s:.0f} s); give the GCS port (6379 by "
            "default) or the Ray client port (ray://host:10001)"
        )


#: An HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC client sends first.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _speaks_grpc(sock: socket.socket, timeout_s: float) -> bool:
    """Does the peer answer an HTTP/2 greeting with a SETTINGS frame, as a gRPC server does?

    A Ray GCS and a Ray client server are gRPC servers; something that accepts connections and
    never answers (a silent port, a hung process) would make ``ray.init`` wait for minutes.
    Clusters with TLS on (``RAY_USE_TLS``) are not probed.
    """
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True
    sock.settimeout(timeout_s)
    try:
        sock.sendall(_H2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x04  # frame type SETTINGS


def start_reaper(ray: Any) -> int | None:
    """Start the watchdog that removes this process's private Ray once this process is gone."""
    try:
        session_dir = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # not a Ray this process started
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.execution.reaper", str(os.getpid()), session_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives its parent's process group being killed
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    return proc.pid
