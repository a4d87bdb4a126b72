"""Secrets stay out of Ray's session folder, the results root, tables and what the CLI prints.

The end-to-end test plants known secrets (AWS keys for an ``s3://`` root on moto's server, an
API key for the openai scorer against our fake server, which echoes the key back in some error
answers) and runs the installed ``valuescope`` with a private local Ray whose temp folder
(``RAY_TMPDIR``) is the test's own; then it reads every file under that folder, every object in
the bucket and the command's output, and finds none of the secrets. The ``--secret-env`` job
case is in ``tests/cluster/test_jobs.py`` (it needs the real head started there).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.errors import SpecError
from cluster.spec import parse_spec
from elicit.scorers.openai_wire import scrub

EXE = os.path.join(os.path.dirname(sys.executable), "valuescope")
BUCKET = "vs-secrets"


def _fake_server_module():
    path = Path(__file__).parents[1] / "elicit" / "fake_openai_server.py"
    spec = importlib.util.spec_from_file_location("fake_openai_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fake_openai_server", module)
    spec.loader.exec_module(module)
    return module


def hits(data: dict[str, bytes], planted: dict[str, str]) -> list[str]:
    """Where each planted value (or its base64/URL-quoted form) occurs."""
    import base64
    import urllib.parse

    found = []
    for label, value in planted.items():
        forms = {
            value.encode(),
            base64.b64encode(value.encode()),
            urllib.parse.quote(value).encode(),
        }
        for where, blob in data.items():
            if any(form in blob for form in forms):
                found.append(f"{label} in {where}")
    return found


def files_under(folder: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                try:
                    with open(path, "rb") as f:
                        out[path] = f.read()
                except OSError:  # a socket or a file removed while we walk
                    continue
    return out


# --- units -------------------------------------------------------------------------------------


def test_base_url_with_credentials_is_refused_without_echoing_them():
    spec = {
        "models": [
            {"name": "m", "scorer": "openai", "base_url": "https://bob:hunter2@h.example/v1"}
        ]
    }
    with pytest.raises(SpecError) as info:
        parse_spec(spec, "spec.yaml")
    message = str(info.value)
    assert "user:password@" in message and "api_key_env" in message
    assert "hunter2" not in message and "bob" not in message and "\n" not in message
    ok = {"models": [{"name": "m", "scorer": "openai", "base_url": "http://127.0.0.1:8000/v1"}]}
    assert parse_spec(ok).models[0].base_url == "http://127.0.0.1:8000/v1"
    with pytest.raises(SpecError, match="http"):
        parse_spec({"models": [{"name": "m", "scorer": "openai", "base_url": "127.0.0.1:8000"}]})


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Incorrect API key provided: sk-live-0123456789abcdef. See docs",
            "sk-live-0123456789abcdef",
        ),
        ("header was Authorization: Basic Ym9iOmh1bnRlcjI=, refused", "Ym9iOmh1bnRlcjI="),
        ("token Bearer eyJhbGciOi.J9x-17 is expired", "eyJhbGciOi.J9x-17"),
        ('{"api_key": "zq81-secret-value"}', "zq81-secret-value"),
        ("x-api-key: abcdef123456", "abcdef123456"),
        ("cannot reach http://bob:hunter2@10.0.0.1/v1", "hunter2"),
    ],
)
def test_error_strings_are_scrubbed_of_credentials(text, secret):
    cleaned = scrub(text)
    assert secret not in cleaned and "***" in cleaned


def test_plain_error_text_is_left_alone():
    for text in ("HTTP 404: model 'x' not found", "a basic question about Bearer bonds"):
        assert scrub(text) == text


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture
def moto_endpoint():
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="admin", aws_secret_access_key="admin",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


def bucket_objects(client) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            out[f"s3://{BUCKET}/{obj['Key']}"] = body
    return out


def test_planted_secrets_reach_no_log_file_table_or_output(moto_endpoint, tmp_path):
    endpoint, client = moto_endpoint
    fake = _fake_server_module()
    planted = {
        "AWS_ACCESS_KEY_ID": "AKIAVS" + secrets.token_hex(7).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "API key": "sk-planted-" + secrets.token_hex(12),
    }
    outcomes = tmp_path / "few.yaml"
    outcomes.write_text(
        "".join(f"- {{id: o{i}, text: 'Outcome {i} (u={i % 3}).'}}\n" for i in range(6))
    )
    ray_tmp = tempfile.mkdtemp(prefix="vssec-", dir="/tmp")  # short: Ray's sockets live here
    spec = tmp_path / "spec.yaml"
    # one in five answers is a 400 that quotes the Authorization header it received
    with fake.FakeOpenAIServer(rates={"echo_key_400": 0.2}, seed=3) as server:
        spec.write_text(
            f"run_id: secrets\nroot: s3://{BUCKET}/results\noutcomes: ['{outcomes}']\n"
            "models:\n"
            f"  - {{name: api-model, scorer: openai, base_url: '{server.base_url}',\n"
            "     api_key_env: VS_PLANTED_API_KEY, max_retries: 0, error_budget: 1.0}\n"
            "  - {name: simulated}\n"
            "design: {kind: full, holdout: {size: 0}}\nfit: {bootstrap: 0}\n"
            "execution: {progress: plain}\n"
        )
        env = {
            **os.environ,
            "RAY_TMPDIR": ray_tmp,
            "VALUESCOPE_S3_ENDPOINT": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": planted["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": planted["AWS_SECRET_ACCESS_KEY"],
            "VS_PLANTED_API_KEY": planted["API key"],
        }
        env.pop("RAY_ADDRESS", None)
        try:
            proc = subprocess.run(
                [EXE, "run", str(spec)], capture_output=True, env=env, timeout=300, cwd=tmp_path
            )
            validate = subprocess.run(
                [EXE, "validate", str(spec)], capture_output=True, env=env, timeout=60
            )
            sql = subprocess.run(
                [EXE, "sql", "SELECT * FROM comparisons", "--root", f"s3://{BUCKET}/results",
                 "--format", "csv"],
                capture_output=True, env=env, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
            assert sql.returncode == 0, sql.stderr.decode(errors="replace")
            # the key reached the replicas (they inherit the driver's environment) ...
            sent = {r.headers.get("Authorization") for r in server.requests}
            assert sent == {f"Bearer {planted['API key']}"}
            echoed = sum(r.fault == "echo_key_400" for r in server.requests)
            assert echoed > 0
            # ... the replicas wrote to the bucket, and echoed keys became scrubbed error rows
            objects = bucket_objects(client)
            assert any("/comparisons/" in k for k in objects)
            assert b"Incorrect API key provided: ***" in sql.stdout
            sessions = files_under(os.path.join(ray_tmp, "ray"))
            assert any("runtime_env" in p or "raylet" in p for p in sessions), list(sessions)[:20]
            found = hits(
                {
                    **sessions,
                    **objects,
                    "run output": proc.stdout + proc.stderr,
                    "validate output": validate.stdout + validate.stderr,
                    "sql output": sql.stdout + sql.stderr,
                },
                planted,
            )
            assert found == [], found
            print(
                f"planted {len(planted)} secrets; grepped {len(sessions)} Ray session files, "
                f"{len(objects)} bucket objects and 3 command outputs: 0 hits"
            )
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
