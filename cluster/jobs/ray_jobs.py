"""Ray Jobs: run a spec (or a sweep) on a cluster through its job server, follow it, stop it.

``valuescope submit`` stages a small working directory — the resolved spec as ``spec.yaml`` and
the outcome and pair files it names — and submits ``valuescope run spec.yaml`` to the
cluster's job server (the Ray dashboard, port 8265) with ``JobSubmissionClient``. The
repository is not uploaded: the cluster's image must have valuescope installed
(``k8s/image/Dockerfile`` does), so the job runs the same code as the workers.

Identity. The submission id is the run id, so ``status``, ``logs`` and ``cancel`` take the run
id. A run whose last submission failed, was stopped or finished can be submitted again: the
new submission is ``<run id>-attempt<N>`` and resumes from the results root (finished shards are
skipped). A run with a submission still pending or running is refused.

Secrets are named, never sent: ``--secret-env OPENAI_API_KEY`` tells the job it needs that
variable, and the job reads it from the cluster's own environment (on Kubernetes the pods'
Secret; on a ``ray start`` cluster the environment ``ray start`` ran in). Only the name travels
(``VALUESCOPE_SECRET_ENV``); the job stops at once, in one line, when a named variable is not
set on the cluster. Values are never put in the job's ``runtime_env``: Ray writes a runtime_env,
values included, into its session logs and keeps it in the job table the dashboard serves.

Authentication. Ray ≥ 2.52 clusters may require a token (``RAY_AUTH_MODE=token`` on the head).
The client follows the same variables: ``RAY_AUTH_MODE=disabled`` sends nothing; otherwise the
token comes from ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH``, else (with
``RAY_AUTH_MODE=token``) ``~/.ray/auth_token``. A refused or missing token is a one-line error
that says which variable to set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cluster.errors import ClusterError

if TYPE_CHECKING:
    from cluster.spec import RunSpec

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
RUN_ENTRYPOINT = "valuescope run spec.yaml"
SWEEP_ENTRYPOINT = "valuescope sweep sweep.yaml"
META_RUN = "valuescope_run_id"
META_KIND = "valuescope_kind"
META_ATTEMPT = "valuescope_attempt"
_ATTEMPT = re.compile(r"^(?P<run>.+)-attempt(?P<n>\d+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class JobError(ClusterError):
    """A Ray Jobs request failed (unreachable server, unknown job, bad request)."""


class JobAuthError(JobError):
    """The job server refused the request: token missing or wrong."""


class JobConflict(JobError):
    """The run already has a submission that is pending or running."""


@dataclass(frozen=True)
class JobState:
    """One submission of a run, as the job server reports it."""

    run_id: str
    submission_id: str
    attempt: int
    kind: str
    status: str
    message: str
    start_time: float | None
    end_time: float | None

    @property
    def terminal(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED", "STOPPED")


# --- connection -------------------------------------------------------------------------------


def default_address() -> str:
    """The job server address: ``$RAY_API_SERVER_ADDRESS``, else an ``http`` ``$RAY_ADDRESS``,
    else the local dashboard (the same order as ``ray job``)."""
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(name, "")
        if value.startswith(("http://", "https://")):
            return value
    return DEFAULT_ADDRESS


def normalise_address(address: str | None) -> str:
    """``HOST:PORT`` → ``http://HOST:PORT``; ``ray://`` and GCS addresses are refused."""
    address = (address or default_address()).strip().rstrip("/")
    if address.startswith(("ray://", "auto")):
        raise JobError(
            f"--address {address!r}: jobs are submitted to the dashboard's HTTP address, e.g. "
            "http://HEAD:8265 (kubectl port-forward svc/<cluster>-head-svc 8265:8265)"
        )
    if "://" not in address:
        address = f"http://{address}"
    return address


def _is_local(address: str) -> bool:
    return (urlparse(address).hostname or "") in _LOCAL_HOSTS


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header for the job server, from Ray's own variables.

    Raises:
        JobAuthError: ``RAY_AUTH_MODE=token`` but no token can be found.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if mode == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if not token and path:
        try:
            token = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise JobAuthError(
                f"RAY_AUTH_TOKEN_PATH={path!r}: cannot read the token: {exc}"
            ) from None
    if not token and mode == "token":
        default = Path.home() / ".ray" / "auth_token"
        with contextlib.suppress(OSError):
            token = default.read_text(encoding="utf-8").strip()
        if not token:
            raise JobAuthError(
                "RAY_AUTH_MODE=token but no token found: set RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` on the head)"
            )
    return {"Authorization": f"Bearer {token}"} if token else {}


_AUTH_HELP = (
    "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` "
    "on the head prints it); a cluster started with RAY_AUTH_MODE=disabled needs none"
)


@contextlib.contextmanager
def sdk_errors(address: str, what: str) -> Iterator[None]:
    """Turn the job SDK's errors into one-line :class:`JobError` messages."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        refused = "failed" in str(exc).split("\n", 1)[0].lower() or "403" in str(exc)
        why = "rejected the token sent" if refused else "requires a token and none was sent"
        raise JobAuthError(f"{what}: the Ray job server at {address} {why}; {_AUTH_HELP}") from None
    except ConnectionError as exc:
        raise JobError(
            f"{what}: cannot reach the Ray job server at {address} ({exc}); is the head up and "
            "its dashboard port reachable (kubectl port-forward svc/<cluster>-head-svc 8265:8265)?"
        ) from None
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        if "status code 401" in str(exc) or "status code 403" in str(exc):
            raise JobAuthError(f"{what}: {first}; {_AUTH_HELP}") from None
        raise JobError(f"{what}: {first[:300]}") from None


def job_client(address: str | None = None) -> Any:
    """A ``JobSubmissionClient`` for the job server at ``address`` (checked to answer)."""
    address = normalise_address(address)
    from ray.job_submission import JobSubmissionClient

    with sdk_errors(address, "connect"):
        return JobSubmissionClient(address, headers=auth_headers())


# --- staging a working directory --------------------------------------------------------------


def _stage_file(source: str, workdir: Path, taken: set[str]) -> str:
    """Copy a local input file into the working directory; returns its path there.

    A relative path without ``..`` keeps its name (so the spec's content, and its run id, do
    not change); anything else goes to ``inputs/<name>``.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        raise JobError(f"input file {source!r} not found; it must exist here to be submitted")
    rel = Path(source)
    if rel.is_absolute() or ".." in rel.parts or source.startswith("~"):
        rel = Path("inputs") / path.name
        stem, n = rel, 1
        while str(rel) in taken:
            n += 1
            rel = stem.with_name(f"{stem.stem}-{n}{stem.suffix}")
    taken.add(str(rel))
    target = workdir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    return rel.as_posix()


def _is_outcome_file(source: str) -> bool:
    """Whether an outcome source is a file (as ``elicit.outcomes.resolve_source`` decides)."""
    from elicit.outcomes import resolve_source

    return Path(source).expanduser() == resolve_source(source)


def stage_inputs(data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Copy the outcome and pair files a spec (or sweep) mapping names into ``workdir`` and
    rewrite their paths; make a local results root absolute; join the job's Ray cluster."""
    data = dict(data)
    taken: set[str] = set()
    data["outcomes"] = [
        _stage_file(s, workdir, taken) if _is_outcome_file(s) else s
        for s in data.get("outcomes") or []
    ]
    design = dict(data.get("design") or {})
    if design.get("pairs_file"):
        design["pairs_file"] = _stage_file(design["pairs_file"], workdir, taken)
        data["design"] = design
    root = str(data.get("root") or "results")
    if "://" not in root:
        data["root"] = str(Path(root).expanduser().resolve())
    execution = dict(data.get("execution") or {})
    if not execution.get("ray_address"):
        # Inside a job, RAY_ADDRESS names the cluster; `auto` joins it (a null address would
        # start a private Ray on the head node).
        execution["ray_address"] = "auto"
    data["execution"] = execution
    return data


#: Names of the variables a job needs from the cluster's environment (comma-separated).
SECRET_ENV_VAR = "VALUESCOPE_SECRET_ENV"


def job_env(secret_env: Sequence[str] = (), env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment: plain ``env``, plus the *names* of the secrets it needs.

    Secret values stay where they are: the job reads them from the cluster's environment
    (see :func:`check_secret_env`).
    """
    out = {"PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise JobError(f"--env {key!r}: not a valid variable name")
        out[key] = value
    for name in secret_env:
        if not _ENV_NAME.match(name):
            raise JobError(f"--secret-env {name!r}: give a variable name, not a value")
        if name in out:
            raise JobError(
                f"--secret-env {name}: also given with --env; a secret is read from the "
                "cluster's environment, never sent with the job"
            )
    if secret_env:
        out[SECRET_ENV_VAR] = ",".join(dict.fromkeys(secret_env))
    return out


def check_secret_env(environ: Mapping[str, str] | None = None) -> None:
    """Inside a job: every variable named with ``--secret-env`` must be set on the cluster.

    Raises:
        JobError: one line naming the missing variables and where to set them.
    """
    environ = os.environ if environ is None else environ
    names = [n for n in environ.get(SECRET_ENV_VAR, "").split(",") if n]
    missing = [n for n in names if not environ.get(n)]
    if missing:
        raise JobError(
            f"--secret-env {', '.join(missing)}: not set in the cluster's environment; secrets "
            "are read there, never sent with the job (on Kubernetes add them to the pods' "
            "Secret; on a `ray start` cluster export them before `ray start`)"
        )


# --- submissions ------------------------------------------------------------------------------


def _state(job: Any) -> JobState | None:
    meta = job.metadata or {}
    run_id = meta.get(META_RUN)
    if run_id is None:
        return None
    return JobState(
        run_id=run_id,
        submission_id=job.submission_id or "",
        attempt=int(meta.get(META_ATTEMPT, "1") or 1),
        kind=meta.get(META_KIND, "run"),
        status=str(job.status),
        message=(job.message or "").strip(),
        start_time=job.start_time / 1000 if job.start_time else None,
        end_time=job.end_time / 1000 if job.end_time else None,
    )


def list_submissions(client: Any, address: str, run_id: str | None = None) -> list[JobState]:
    """valuescope submissions on the cluster (of one run, when given), oldest first."""
    with sdk_errors(address, "list jobs"):
        jobs = client.list_jobs()
    states = [s for s in (_state(j) for j in jobs) if s is not None]
    if run_id is not None:
        base = _ATTEMPT.match(run_id)
        wanted = {run_id, base.group("run")} if base else {run_id}
        states = [s for s in states if s.run_id in wanted or s.submission_id == run_id]
    return sorted(states, key=lambda s: (s.run_id, s.attempt))


def latest(client: Any, address: str, run: str) -> JobState:
    """The latest submission of a run (or the submission with that id)."""
    states = list_submissions(client, address, run)
    of_run = [s for s in states if s.run_id == run]
    if of_run:
        return of_run[-1]
    exact = [s for s in states if s.submission_id == run]
    if exact:
        return exact[-1]
    if not states:
        raise JobError(
            f"no valuescope job for run {run!r} on {address}; `valuescope status --address "
            f"{address}` lists the runs submitted there"
        )
    return states[-1]


def state_of(client: Any, address: str, submission_id: str) -> JobState:
    """The state of one submission, by its id."""
    with sdk_errors(address, f"status of {submission_id!r}"):
        job = client.get_job_info(submission_id)
    state = _state(job)
    if state is None:  # submitted by other means: report it plainly
        status = str(job.status)
        return JobState(
            submission_id, submission_id, 1, "other", status, job.message or "", None, None
        )
    return state


def submit_files(
    address: str | None,
    *,
    run_id: str,
    kind: str,
    workdir: Path,
    entrypoint: str,
    env_vars: Mapping[str, str],
) -> JobState:
    """Submit ``entrypoint`` with ``workdir`` as its working directory (uploaded as is).

    The submission id is ``run_id`` (``run_id-attemptN`` for later attempts).

    Raises:
        JobConflict: the run has a submission that is still pending or running.
    """
    address = normalise_address(address)
    client = job_client(address)
    previous = [s for s in list_submissions(client, address, run_id) if s.run_id == run_id]
    active = [s for s in previous if not s.terminal]
    if active:
        s = active[-1]
        raise JobConflict(
            f"run {run_id!r} is already {s.status.lower()} on {address} as job "
            f"{s.submission_id!r}; follow it with `valuescope logs {run_id} --follow` or stop "
            f"it with `valuescope cancel {run_id}` before submitting again"
        )
    with sdk_errors(address, "list jobs"):
        used = {j.submission_id for j in client.list_jobs()}
    attempt = max((s.attempt for s in previous), default=0) + 1
    submission_id = run_id if attempt == 1 else f"{run_id}-attempt{attempt}"
    while submission_id in used:
        attempt += 1
        submission_id = f"{run_id}-attempt{attempt}"
    runtime_env = {"working_dir": str(workdir), "env_vars": dict(env_vars)}
    metadata = {META_RUN: run_id, META_KIND: kind, META_ATTEMPT: str(attempt)}
    with sdk_errors(address, f"submit {kind} {run_id!r}"):
        client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env=runtime_env,
            metadata=metadata,
        )
    logger.info("submitted %s as job %s to %s", run_id, submission_id, address)
    if previous:
        logger.info("run %s: attempt %d resumes from the results root", run_id, attempt)
    return JobState(run_id, submission_id, attempt, kind, "PENDING", "", None, None)


def submit(
    spec: RunSpec,
    address: str | None = None,
    *,
    secret_env: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> JobState:
    """Submit a run as a Ray Job (``valuescope run spec.yaml`` on the cluster).

    Inputs are checked here first (outcome sets, pairs file), so a bad spec fails before
    anything reaches the cluster.
    """
    import yaml

    from cluster.spec import parse_spec
    from elicit.outcomes import load_outcomes

    for source in spec.outcomes:
        load_outcomes(source)
    for model in spec.models:
        if model.api_key_env and model.api_key_env not in secret_env:
            logger.warning(
                "model %s reads its key from $%s: it must be set in the cluster's environment "
                "(pass --secret-env %s to have the job check it at start)",
                model.name,
                model.api_key_env,
                model.api_key_env,
            )
    env_vars = job_env(secret_env, env)
    address = normalise_address(address)
    with tempfile.TemporaryDirectory(prefix="valuescope-job-") as tmp:
        workdir = Path(tmp)
        data = stage_inputs(spec.model_dump(mode="json"), workdir)
        # The run id of the spec the cluster runs (the same as here unless a file path had
        # to be rewritten), pinned so every attempt resumes the same run.
        data["run_id"] = parse_spec(data, "<submitted spec>").resolved_run_id()
        (workdir / "spec.yaml").write_text(
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        if not str(data["root"]).startswith("s3://") and not _is_local(address):
            logger.warning(
                "results root %s is a folder: the job writes it on the cluster's nodes, not "
                "here; use an s3:// root on a multi-node cluster",
                data["root"],
            )
        return submit_files(
            address,
            run_id=data["run_id"],
            kind="run",
            workdir=workdir,
            entrypoint=RUN_ENTRYPOINT,
            env_vars=env_vars,
        )


def submit_sweep(
    path: str | Path,
    address: str | None,
    *,
    secret_env: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> JobState:
    """Submit ``valuescope sweep sweep.yaml`` as a Ray Job (submission id = sweep name)."""
    import yaml

    from cluster.jobs.sweep import SweepSpec, load_sweep, resolve_model

    sweep = load_sweep(path)
    for m in sweep.models:
        resolve_model(sweep, m)
    env_vars = job_env(secret_env, env)
    with tempfile.TemporaryDirectory(prefix="valuescope-sweep-") as tmp:
        data = stage_inputs(sweep.model_dump(mode="json"), Path(tmp))
        SweepSpec.model_validate(data)
        (Path(tmp) / "sweep.yaml").write_text(
            yaml.safe_dump(data, sort_keys=False), encoding="utf-8"
        )
        return submit_files(
            address,
            run_id=sweep.name,
            kind="sweep",
            workdir=Path(tmp),
            entrypoint=SWEEP_ENTRYPOINT,
            env_vars=env_vars,
        )


def status(address: str | None = None, run: str | None = None) -> list[JobState]:
    """Every valuescope submission on the cluster, or the latest one of ``run``."""
    address = normalise_address(address)
    client = job_client(address)
    if run is None:
        return list_submissions(client, address)
    return [latest(client, address, run)]


def logs(address: str | None, run: str) -> str:
    """The whole log of a run's latest submission."""
    address = normalise_address(address)
    client = job_client(address)
    state = latest(client, address, run)
    with sdk_errors(address, f"logs of {state.submission_id!r}"):
        return str(client.get_job_logs(state.submission_id))


def tail(address: str | None, run: str, echo: Callable[[str], None]) -> JobState:
    """Stream a run's latest log as it is written (``tail_job_logs``) until the job ends."""
    import asyncio

    address = normalise_address(address)
    client = job_client(address)
    state = latest(client, address, run)

    async def _stream() -> None:
        async for chunk in client.tail_job_logs(state.submission_id):
            echo(chunk)

    try:
        with sdk_errors(address, f"follow {state.submission_id!r}"):
            asyncio.run(_stream())
    except JobAuthError:
        raise
    except JobError as exc:  # e.g. a proxy without websockets: fall back to polling
        logger.info("log stream closed (%s); polling instead", exc)
        return follow(client, address, state.submission_id, echo=echo, status_lines=False)
    return state_of(client, address, state.submission_id)


def follow(
    client: Any,
    address: str,
    submission_id: str,
    *,
    echo: Callable[[str], None],
    poll_s: float = 2.0,
    status_lines: bool = True,
) -> JobState:
    """Print status changes and new log output of a submission until it ends."""
    seen, shown = "", 0
    while True:
        with sdk_errors(address, f"status of {submission_id!r}"):
            current = str(client.get_job_status(submission_id))
        if current != seen and status_lines:
            echo(f"[valuescope] job {submission_id}: {current}\n")
        seen = current
        with sdk_errors(address, f"logs of {submission_id!r}"):
            text = str(client.get_job_logs(submission_id))
        if len(text) > shown:
            echo(text[shown:])
            shown = len(text)
        if current in ("SUCCEEDED", "FAILED", "STOPPED"):
            return state_of(client, address, submission_id)
        time.sleep(poll_s)


def wait(
    address: str | None, submission_id: str, echo: Callable[[str], None], poll_s: float = 2.0
) -> JobState:
    """Follow a submission to its end (status lines and its log); returns its final state."""
    address = normalise_address(address)
    return follow(job_client(address), address, submission_id, echo=echo, poll_s=poll_s)


def cancel(address: str | None, run: str, wait_s: float = 60.0) -> JobState:
    """Stop a run's latest submission and wait until the job server says it stopped."""
    address = normalise_address(address)
    client = job_client(address)
    state = latest(client, address, run)
    if state.terminal:
        return state
    with sdk_errors(address, f"stop {state.submission_id!r}"):
        client.stop_job(state.submission_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = state_of(client, address, state.submission_id)
        if state.terminal:
            return state
        time.sleep(0.5)
    return state
