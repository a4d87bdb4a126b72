"""Ray Jobs against a real local head (`ray start --head` with its dashboard and job server).

The head runs with token authentication on (Ray's default since 2.52) and a token of its own;
the CLI is driven as a user would, in subprocesses with that token in their environment. The
head is stopped by killing the process group it was started in: `ray stop` would stop every
Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.jobs import ray_jobs as jobs
from storage.catalog import query

BIN = os.path.dirname(sys.executable)
EXE = os.path.join(BIN, "valuescope")
N_PROMPTS = 80 * 79
SHARDS_500 = 1 + 13  # held-out round (316 prompts) + 6004 prompts in shards of 500


@dataclass(frozen=True)
class Head:
    address: str
    env: dict[str, str]
    pid: int
    token: str
    temp_dir: str
    secret: str
    """Value of ``VS_HEAD_SECRET``, set in the head's own environment (never the client's)."""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _answers(address: str, token: str) -> bool:
    request = urllib.request.Request(
        f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def head():
    """A Ray head with dashboard and job server on 127.0.0.1, token auth on (module scope)."""
    gcs, dash, client, agent_http, agent_grpc, runtime_env, metrics = free_ports(7)
    token = secrets.token_hex(16)
    head_secret = "sk-head-" + secrets.token_hex(12)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the job runs `valuescope`
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="vsray-", dir="/tmp")  # short: Ray's sockets live here
    log = open(os.path.join(temp_dir, "head.log"), "wb")  # noqa: SIM115
    cmd = [
        os.path.join(BIN, "ray"), "start", "--head", "--block",
        f"--port={gcs}", "--node-ip-address=127.0.0.1",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}", "--num-cpus=2", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env={**env, "VS_HEAD_SECRET": head_secret},  # the cluster's own secret (a k8s Secret)
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and not _answers(address, token):
        time.sleep(0.5)
    try:
        if not _answers(address, token):
            tail = Path(log.name).read_text(errors="replace")[-1500:]
            pytest.skip(f"the Ray head's dashboard/job server did not start here: {tail}")
        client_env = {
            **env,
            "RAY_API_SERVER_ADDRESS": address,
            "HF_HUB_OFFLINE": "1",
            "VALUESCOPE_PLACEMENT_TIMEOUT_S": "60",
        }
        yield Head(address, client_env, proc.pid, token, temp_dir, head_secret)
    finally:
        children = _descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group `ray start` leads: this head only
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in children:  # anything of this head that left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


def cli(head: Head, *args: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        [EXE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**head.env, **(env or {})},
    )


def exactly_once(root: str) -> tuple[int, int]:
    row = query(
        root, "SELECT count(*) AS n, count(DISTINCT (pair_id, orientation)) AS d FROM comparisons"
    ).to_pylist()[0]
    return row["n"], row["d"]


def job_status(head: Head, run: str) -> dict:
    proc = cli(head, "status", run, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for(predicate, timeout: float = 90, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def parts(root: str, run_id: str) -> dict[str, int]:
    base = Path(root) / "comparisons" / f"run_id={run_id}"
    return {str(p.relative_to(base)): p.stat().st_mtime_ns for p in base.rglob("part-*.parquet")}


# --- no head needed ---------------------------------------------------------------------------


def test_staging_keeps_relative_paths_and_pins_the_cluster(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "mine.yaml").write_text("- {id: a, text: A.}\n- {id: b, text: B.}\n")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("outcome_a,outcome_b\na,b\n")
    work = tmp_path / "work"
    work.mkdir()
    data = jobs.stage_inputs(
        {
            "root": "results",
            "outcomes": ["starter", "sets/mine.yaml"],
            "design": {"kind": "pairs", "pairs_file": str(pairs)},
        },
        work,
    )
    assert data["outcomes"] == ["starter", "sets/mine.yaml"]  # same text: same spec hash
    assert data["design"]["pairs_file"] == "inputs/pairs.csv"
    assert (work / "sets" / "mine.yaml").is_file() and (work / "inputs" / "pairs.csv").is_file()
    assert data["root"] == str(tmp_path / "results")
    assert data["execution"]["ray_address"] == "auto"


def test_secret_env_sends_the_name_never_the_value(monkeypatch):
    monkeypatch.setenv("VS_SECRET", "hunter2")
    env = jobs.job_env(["VS_SECRET", "VS_OTHER", "VS_SECRET"], {"PLAIN": "1"})
    assert env == {"PYTHONUNBUFFERED": "1", "PLAIN": "1", jobs.SECRET_ENV_VAR: "VS_SECRET,VS_OTHER"}
    assert "hunter2" not in str(env)
    with pytest.raises(jobs.JobError, match="give a variable name"):
        jobs.job_env(["A=b"])
    with pytest.raises(jobs.JobError, match="never sent"):
        jobs.job_env(["VS_SECRET"], {"VS_SECRET": "x"})
    # inside the job: the named variables must come from the cluster's environment
    jobs.check_secret_env({jobs.SECRET_ENV_VAR: "VS_SECRET", "VS_SECRET": "on-the-cluster"})
    jobs.check_secret_env({})
    with pytest.raises(jobs.JobError, match="VS_OTHER: not set in the cluster") as info:
        jobs.check_secret_env({jobs.SECRET_ENV_VAR: "VS_SECRET,VS_OTHER", "VS_SECRET": "hunter2"})
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)


def test_auth_headers_follow_rays_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0")
    assert jobs.auth_headers() == {}
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert jobs.auth_headers() == {"Authorization": "Bearer t0"}
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("t1\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.auth_headers() == {"Authorization": "Bearer t1"}


# --- against the head -------------------------------------------------------------------------


def test_auth_mismatch_is_a_clear_one_line_error(head):
    wrong = cli(head, "status", env={"RAY_AUTH_TOKEN": "not-the-token"})
    assert wrong.returncode == 1
    assert wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "rejected the token" in wrong.stderr and "RAY_AUTH_TOKEN" in wrong.stderr
    none = cli(head, "status", env={"RAY_AUTH_MODE": "disabled"})
    assert none.returncode == 1 and "requires a token and none was sent" in none.stderr


def test_submit_with_flags_wait_and_query(head, tmp_path):
    root = str(tmp_path / "results")
    proc = cli(
        head, "submit", "--model", "simulated", "--outcomes", "starter", "--design", "full",
        "--root", root, "--run-id", "flags", "--wait", "--secret-env", "VS_HEAD_SECRET",
        env={"VS_HEAD_SECRET": "s3cr3t-value"},  # the submitter's value is never sent
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "run flags: submitted as job flags" in out
    assert "[valuescope] job flags: RUNNING" in out and "job flags: SUCCEEDED" in out
    assert "round 1: 6,004/6,004 prompts" in out  # the run's progress lines, followed live
    assert exactly_once(root) == (N_PROMPTS, N_PROMPTS)
    assert query(root, "SELECT status FROM runs").to_pylist() == [{"status": "done"}]
    assert job_status(head, "flags")["status"] == "SUCCEEDED"
    # only the secret's name went with the job, and nothing we print or store holds a value
    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(
        head.address, headers={"Authorization": f"Bearer {head.token}"}
    ).get_job_info("flags")
    assert info.runtime_env["env_vars"][jobs.SECRET_ENV_VAR] == "VS_HEAD_SECRET"
    assert "VS_HEAD_SECRET" not in info.runtime_env["env_vars"]
    stored = (Path(root) / "runs" / "flags" / "manifest.json").read_text()
    logs = cli(head, "logs", "flags")
    for value in ("s3cr3t-value", head.secret):
        assert value not in out + stored + logs.stdout
    assert "Query the results" in logs.stdout
    followed = cli(head, "logs", "flags", "--follow")  # a finished job: whole log, then status
    assert followed.returncode == 0 and "Query the results" in followed.stdout
    assert "job flags: SUCCEEDED" in followed.stderr
    table = cli(head, "status")
    assert table.returncode == 0 and "flags" in table.stdout and "SUCCEEDED" in table.stdout


def _fake_openai():
    import importlib.util

    path = Path(__file__).parents[1] / "elicit" / "fake_openai_server.py"
    spec = importlib.util.spec_from_file_location("fake_openai_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fake_openai_server", module)
    spec.loader.exec_module(module)
    return module


def _files_holding(folder: str, values: list[str]) -> list[str]:
    found = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            found += [path for v in values if v.encode() in data]
    return found


def test_secret_env_job_reads_the_clusters_secret_and_no_file_holds_it(head, tmp_path):
    """The job's API key comes from the cluster (the head's own environment), never from the
    submitter; no file under the head's Ray temp folder or the results root, and nothing the
    CLI prints, holds it."""
    fake = _fake_openai()
    root = str(tmp_path / "results")
    submitter_value = "sk-submitter-" + secrets.token_hex(8)
    outcomes = tmp_path / "few.yaml"
    outcomes.write_text(
        "".join(f"- {{id: o{i}, text: 'Outcome {i} (u={i}).'}}\n" for i in range(5))
    )
    with fake.FakeOpenAIServer(rates={"echo_key_400": 0.2}, seed=5) as server:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            f"run_id: keyed\nroot: {root}\noutcomes: ['{outcomes}']\n"
            f"models: [{{name: api, scorer: openai, base_url: '{server.base_url}', "
            "api_key_env: VS_HEAD_SECRET, max_retries: 0, error_budget: 1.0}]\n"
            "design: {kind: full, holdout: {size: 0}}\nfit: {bootstrap: 0}\n"
        )
        proc = cli(
            head, "submit", str(spec), "--wait", "--secret-env", "VS_HEAD_SECRET",
            env={"VS_HEAD_SECRET": submitter_value},
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert {r.headers.get("Authorization") for r in server.requests} == {
            f"Bearer {head.secret}"
        }  # the cluster's key was used; the submitter's was never sent
        assert any(r.fault == "echo_key_400" for r in server.requests)
    logs = cli(head, "logs", "keyed").stdout
    errors = query(root, "SELECT DISTINCT error FROM comparisons WHERE error IS NOT NULL")
    assert any("***" in e for e in errors.column("error").to_pylist())
    values = [head.secret, submitter_value]
    assert _files_holding(head.temp_dir, values) == []
    assert _files_holding(root, values) == []
    n_files = sum(len(f) for _, _, f in os.walk(head.temp_dir)) + sum(
        len(f) for _, _, f in os.walk(root)
    )
    print(f"--secret-env job: grepped {n_files} files (head's Ray folder, results root): 0 hits")
    assert not any(v in out + logs for v in values)
    # a secret the cluster does not have stops the job at once, in one line
    missing = cli(
        head, "submit", str(spec), "--run-id", "nokey", "--wait", "--secret-env", "VS_NOT_THERE"
    )
    assert missing.returncode == 1
    failed_logs = cli(head, "logs", "nokey").stdout
    assert "VS_NOT_THERE: not set in the cluster's environment" in failed_logs
    assert "Traceback" not in failed_logs


def test_failed_job_is_resubmitted_and_resumes(head, tmp_path):
    root = str(tmp_path / "results")
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"run_id: flaky\nroot: {root}\noutcomes: [starter]\nmodels: [{{name: simulated}}]\n"
        "design: {kind: full}\nfit: {bootstrap: 0}\n"
        "execution: {shard_size: 500, max_shard_retries: 0, progress: plain}\n"
    )
    faults = json.dumps({"die_on_shard": [6], "marker_dir": str(markers)})
    failed = cli(head, "submit", str(spec), "--wait", "--env", f"VALUESCOPE_FAULTS={faults}")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "job flaky: FAILED" in failed.stderr and "submitting again resumes" in failed.stderr
    assert os.listdir(markers) == ["died-6"]  # the replica process really died
    before = parts(root, "flaky")
    assert 0 < len(before) < SHARDS_500
    again = cli(head, "submit", str(spec), "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        "submitted as job flaky-attempt2" in again.stderr
        and "(attempt 2, resuming)" in again.stderr
    )
    after = parts(root, "flaky")
    assert len(after) == SHARDS_500
    assert all(after[k] == before[k] for k in before)  # finished shards were not recomputed
    assert exactly_once(root) == (N_PROMPTS, N_PROMPTS)
    state = job_status(head, "flaky")
    assert (state["submission_id"], state["attempt"], state["status"]) == (
        "flaky-attempt2", 2, "SUCCEEDED",
    )  # fmt: skip


def test_running_job_refuses_resubmission_and_cancel_stops_it(head, tmp_path):
    root = str(tmp_path / "results")
    args = (
        "--model", "simulated", "--design", "full", "--root", root, "--run-id", "slow",
        "--shard-size", "200",
    )  # fmt: skip
    slow = json.dumps({"sleep_s": 1.0})
    first = cli(head, "submit", *args, "--env", f"VALUESCOPE_FAULTS={slow}")
    assert first.returncode == 0, first.stderr
    wait_for(lambda: job_status(head, "slow")["status"] == "RUNNING")
    second = cli(head, "submit", *args)
    assert second.returncode == 1
    assert (
        "run 'slow' is already running" in second.stderr
        and "valuescope cancel slow" in second.stderr
    )
    stopped = cli(head, "cancel", "slow")
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stderr
    assert job_status(head, "slow")["status"] == "STOPPED"


def test_replica_killed_during_a_job_loses_and_duplicates_nothing(head, tmp_path, monkeypatch):
    import psutil

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    root = str(tmp_path / "results")
    slow = json.dumps({"sleep_s": 0.3})
    submitted = cli(
        head, "submit", "--model", "simulated", "--design", "full", "--root", root,
        "--run-id", "killed", "--shard-size", "200", "--replicas", "2",
        "--env", f"VALUESCOPE_FAULTS={slow}",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr

    def replica_pid() -> int | None:
        for pid in _descendants(head.pid):
            try:
                if psutil.Process(pid).cmdline()[0].startswith("ray::Replica.run_shard"):
                    return pid
            except (psutil.Error, IndexError):
                continue
        return None

    victim = wait_for(replica_pid, timeout=120, every=0.2)
    os.kill(victim, signal.SIGKILL)
    state = jobs.wait(head.address, "killed", echo=lambda text: None, poll_s=1.0)
    assert state.status == "SUCCEEDED", cli(head, "logs", "killed").stdout[-3000:]
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"
    assert exactly_once(root) == (N_PROMPTS, N_PROMPTS)
    assert "died on shard" in cli(head, "logs", "killed").stdout  # re-queued, logged


def test_sweep_submitted_as_a_job(head, tmp_path):
    root = str(tmp_path / "results")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: jobsweep\nroot: {root}\ndesign: {{kind: full}}\nfit: {{bootstrap: 0}}\n"
        "execution: {shard_size: 2000}\nmodels:\n"
        "  - {name: simulated, key: s1, options: {seed: 1}}\n"
        "  - {name: simulated, key: s2, options: {seed: 2}}\n"
    )
    proc = cli(head, "sweep", str(sweep), "--address", head.address, "--wait")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted as job jobsweep" in proc.stderr and "job jobsweep: SUCCEEDED" in proc.stderr
    rows = query(root, "SELECT key, status FROM sweeps ORDER BY key").to_pylist()
    assert rows == [{"key": "s1", "status": "done"}, {"key": "s2", "status": "done"}]
    assert len(query(root, "SELECT * FROM sweep_similarity")) == 1
