"""The openai scorer against a real HTTP server of our own on 127.0.0.1 (fake_openai_server)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fake_openai_server import FakeOpenAIServer, fake_p_a, last_user_text

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ErrorBudgetExceeded, ScorerError
from elicit.prompts import DEFAULT_TEMPLATE, PromptTemplate
from elicit.scorers import make_scorer
from elicit.scorers.base import Measurements, QueryBatch
from elicit.scorers.openai import OpenAIScorer

KEY_ENV = "VALUESCOPE_TEST_OPENAI_KEY"
KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e"
UTILITIES = [0.0, 0.8, -1.1, 2.0, 0.3, -0.4]
OUTCOMES = [f"Outcome {i} happens (u={u})." for i, u in enumerate(UTILITIES)]
TEMPLATE = PromptTemplate("default", DEFAULT_TEMPLATE, "You are a helpful assistant.")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def make(
    server: FakeOpenAIServer,
    mode: ModeConfig | None = None,
    template: PromptTemplate = TEMPLATE,
    **model: Any,
) -> OpenAIScorer:
    config = ModelConfig(
        **{
            "name": "fake-model",
            "scorer": "openai",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "timeout_s": 2.0,
            **model,
        }
    )
    # tiny back-off so retry tests take milliseconds
    return OpenAIScorer(
        config, mode or ModeConfig(), template, OUTCOMES, backoff_base_s=0.005, backoff_max_s=0.02
    )


def all_pairs(repeat: int = 1) -> QueryBatch:
    pairs = [(a, b) for a in range(len(OUTCOMES)) for b in range(len(OUTCOMES)) if a != b] * repeat
    a_idx = np.array([a for a, _ in pairs])
    b_idx = np.array([b for _, b in pairs])
    return QueryBatch(np.arange(len(pairs)), a_idx, b_idx)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def expected_p_a(batch: QueryBatch) -> np.ndarray:
    u = np.array(UTILITIES)
    return sigmoid(u[batch.a_idx] - u[batch.b_idx])


def test_chat_template_kwargs_are_sent(server: FakeOpenAIServer) -> None:
    batch = all_pairs().take(slice(0, 2))
    with make(server, name="qwen3-8b", path="Qwen/Qwen3-8B") as scorer:  # registry default
        scorer.score(batch)
    with make(server, chat_template_kwargs={"enable_thinking": True}) as scorer:
        scorer.score(batch)
    sent = [r.json.get("chat_template_kwargs") for r in server.chat_requests]
    assert sent == [{"enable_thinking": False}] * 2 + [{"enable_thinking": True}] * 2


def test_logprob_mode_reads_letter_probabilities(server: FakeOpenAIServer) -> None:
    batch = all_pairs()
    with make(server, path="org/served-model") as scorer:
        out = scorer.score(batch)
    assert len(out) == len(batch) and out.error == [None] * len(batch)
    np.testing.assert_allclose(out.p_a, expected_p_a(batch), rtol=1e-9)
    np.testing.assert_allclose(out.p_a + out.p_b, 1.0)
    np.testing.assert_allclose(out.mass, 0.9, rtol=1e-9)  # " A" + "A" + "B" carry 0.9
    np.testing.assert_allclose(out.lp_a, np.log(0.9 * expected_p_a(batch)), rtol=1e-9)
    assert (out.latency_ms > 0).all() and out.response is None and out.n_a is None
    assert out.extra["attempts"].tolist() == [1] * len(batch)

    body = server.chat_requests[0].json
    assert body["model"] == "org/served-model"  # path wins over name
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "continue_final_message" not in body and "chat_template_kwargs" not in body
    texts = sorted(last_user_text(r.json) for r in server.chat_requests)
    want = sorted(
        TEMPLATE.user_message(OUTCOMES[a], OUTCOMES[b])
        for a, b in zip(batch.a_idx, batch.b_idx, strict=True)
    )
    assert texts == want


def test_results_keep_query_order_when_answers_arrive_out_of_order(
    server: FakeOpenAIServer,
) -> None:
    # the first outcomes' prompts are answered slowest, so completion order is reversed
    server.delay_s = lambda body: 0.03 * (5 - int(last_user_text(body).split("Outcome ")[1][0]))
    batch = all_pairs()
    with make(server, max_concurrency=32) as scorer:
        out = scorer.score(batch)
    np.testing.assert_allclose(out.p_a, expected_p_a(batch), rtol=1e-9)
    arrival = [last_user_text(r.json) for r in server.chat_requests]
    assert len(set(arrival)) == len(batch)


def test_transient_faults_are_retried_and_counted(server: FakeOpenAIServer) -> None:
    server.script = [
        "429",
        "500",
        "timeout",
        "disconnect",
        "503",
        "malformed_json",
        "missing_fields",
    ]
    server.hang_s = 2.0
    batch = all_pairs()
    with make(server, timeout_s=0.5, max_concurrency=4) as scorer:
        out = scorer.score(batch)
        stats = scorer.stats
    assert out.error == [None] * len(batch)
    np.testing.assert_allclose(out.p_a, expected_p_a(batch), rtol=1e-9)
    assert stats.retries == 7 and stats.failed == 0 and stats.queries == len(batch)
    assert stats.requests == len(batch) + 7 == len(server.chat_requests)
    assert dict(stats.retry_reasons) == {
        "http_429": 1,
        "http_500": 1,
        "http_503": 1,
        "timeout": 1,
        "connection": 1,
        "malformed": 2,
    }
    assert out.extra["attempts"].sum() == len(batch) + 7


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.script = ["429"]
    server.retry_after = "0.4"
    start = time.perf_counter()
    with make(server) as scorer:
        out = scorer.score(all_pairs().take(slice(0, 1)))
    assert out.error == [None] and time.perf_counter() - start >= 0.4


def test_client_errors_fail_at_once_and_retries_run_out(server: FakeOpenAIServer) -> None:
    victim = TEMPLATE.user_message(OUTCOMES[0], OUTCOMES[1])
    other = TEMPLATE.user_message(OUTCOMES[1], OUTCOMES[0])
    server.fault_fn = lambda i, body: {victim: "400", other: "502"}.get(last_user_text(body))
    batch = all_pairs()
    with make(server, max_retries=2, error_budget=0.1) as scorer:
        out = scorer.score(batch)
    errors = {i: e for i, e in enumerate(out.error) if e is not None}
    assert sorted(errors) == [0, 5]  # (0, 1) is query 0, (1, 0) is query 5
    assert errors[0].startswith("HTTP 400: injected 400")  # no retry for a client error
    assert errors[5].startswith("HTTP 502") and "gave up after 3 attempts" in errors[5]
    assert np.isnan(out.p_a[[0, 5]]).all() and not np.isnan(np.delete(out.p_a, [0, 5])).any()
    assert out.extra["attempts"][0] == 1 and out.extra["attempts"][5] == 3
    assert len(server.chat_requests) == len(batch) + 2
    assert scorer.stats.errors == {"http_400": 1, "http_502": 1}


def test_malformed_answers_become_error_rows(server: FakeOpenAIServer) -> None:
    victim = TEMPLATE.user_message(OUTCOMES[2], OUTCOMES[3])
    server.fault_fn = lambda i, body: "malformed_json" if last_user_text(body) == victim else None
    batch = all_pairs()
    with make(server, max_retries=5) as scorer:
        out = scorer.score(batch)
    bad = [e for e in out.error if e is not None]
    assert len(bad) == 1 and bad[0].startswith("malformed answer")
    assert "gave up after 3 attempts" in bad[0]  # two retries, not max_retries


def test_error_budget_stops_a_failing_batch(server: FakeOpenAIServer) -> None:
    server.rates = {"401": 1.0}
    batch = all_pairs(repeat=4)  # 120 queries
    with make(server, max_concurrency=4) as scorer, pytest.raises(ErrorBudgetExceeded) as info:
        scorer.score(batch)
    message = str(info.value)
    assert "of 120 queries in this batch failed" in message and "http_401" in message
    assert "5.0%" in message
    # it stopped as soon as the outcome was certain, not after all 120 requests
    assert len(server.chat_requests) < 40


def test_error_budget_counts_small_batches_cumulatively(server: FakeOpenAIServer) -> None:
    victims = {TEMPLATE.user_message(OUTCOMES[0], OUTCOMES[b]) for b in (1, 2)}
    server.fault_fn = lambda i, body: "400" if last_user_text(body) in victims else None
    batch = all_pairs().take(slice(0, 12))  # 2 failures in 12 queries: 17 %, budget 10 %
    with make(server, error_budget=0.1) as scorer:
        first = scorer.score(batch)  # too few queries to judge yet: error rows only
        assert sum(e is not None for e in first.error) == 2
        with pytest.raises(ErrorBudgetExceeded, match="of 24 queries so far"):
            scorer.score(batch)


def test_failures_within_budget_do_not_raise(server: FakeOpenAIServer) -> None:
    victim = TEMPLATE.user_message(OUTCOMES[0], OUTCOMES[1])
    server.fault_fn = lambda i, body: "400" if last_user_text(body) == victim else None
    with make(server) as scorer:  # 1 failure in 30 = 3.3 % < 5 %
        out = scorer.score(all_pairs())
    assert sum(e is not None for e in out.error) == 1


def test_missing_logprobs_fall_back_to_sampling(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.supports_logprobs = False
    batch = all_pairs()
    mode = ModeConfig(kind="logprob", k=4, temperature=0.7, max_tokens=5)
    with caplog.at_level(logging.WARNING), make(server, mode) as scorer:
        out = scorer.score(batch)
        assert scorer.effective_mode == "sample"
        n_before = len(server.chat_requests)
        scorer.score(batch)
        later = server.chat_requests[n_before:]
    assert out.error == [None] * len(batch)
    assert out.n_a is not None and out.n_b is not None and out.n_unparsed is not None
    np.testing.assert_array_equal(out.n_a + out.n_b + out.n_unparsed, 4)
    want_a = np.round(expected_p_a(batch) * 4)
    np.testing.assert_array_equal(out.n_a, want_a)
    np.testing.assert_allclose(out.p_a, want_a / 4)
    assert np.isnan(out.mass).all() and out.response is not None
    assert len(json.loads(out.response[0] or "")) == 4
    warnings = [r for r in caplog.records if "falling back to sample mode" in r.getMessage()]
    assert len(warnings) == 1
    # remembered: the second batch asks for samples straight away
    assert len(later) == len(batch) and all("logprobs" not in r.json for r in later)
    assert all(r.json["n"] == 4 and r.json["temperature"] == 0.7 for r in later)


def test_sample_mode_counts_and_unparseable_policy(server: FakeOpenAIServer) -> None:
    server.unparseable_every = 5  # choices 5 and 10 of 10 are "I cannot decide."
    batch = all_pairs()
    mode = ModeConfig(kind="sample", k=10, unparseable="distribution")
    with make(server, mode) as scorer:
        out = scorer.score(batch)
    assert out.n_unparsed is not None and out.n_a is not None and out.n_b is not None
    np.testing.assert_array_equal(out.n_unparsed, 2)
    np.testing.assert_array_equal(out.n_a + out.n_b, 8)
    np.testing.assert_allclose(out.p_a, (out.n_a + 1) / 10)  # half of each unparseable to A
    assert out.response is not None and len(json.loads(out.response[0] or "")) == 10
    assert len(server.chat_requests) == len(batch)  # one request with n=10 each


def test_sample_mode_without_n_support_sends_k_requests(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.supports_n = False
    batch = all_pairs().take(slice(0, 6))
    with caplog.at_level(logging.WARNING), make(server, ModeConfig(kind="sample", k=5)) as scorer:
        out = scorer.score(batch)
        requests = len(server.chat_requests)
        scorer.score(batch)
    assert out.n_a is not None and out.n_b is not None
    np.testing.assert_array_equal(out.n_a + out.n_b, 5)
    assert len(server.chat_requests) - requests == 6 * 5  # no n=5 requests once known
    assert any("does not support n>1" in r.getMessage() for r in caplog.records)


def test_reasoning_mode_parses_final_answer(server: FakeOpenAIServer) -> None:
    server.reasoning = True
    batch = all_pairs()
    mode = ModeConfig(kind="reasoning", k=2, max_tokens=200)
    with make(server, mode) as scorer:
        out = scorer.score(batch)
    assert out.n_unparsed is not None and out.n_a is not None
    np.testing.assert_array_equal(out.n_unparsed, 0)
    np.testing.assert_array_equal(out.n_a, np.round(expected_p_a(batch) * 2))
    assert out.response is not None and "Answer:" in (out.response[0] or "")
    assert server.chat_requests[0].json["max_tokens"] == 200


def test_answer_prefix_continues_the_assistant_turn(server: FakeOpenAIServer) -> None:
    template = PromptTemplate("t", DEFAULT_TEMPLATE, None, answer_prefix="Answer:")
    with make(server, template=template, system_role=False) as scorer:
        scorer.score(all_pairs().take(slice(0, 2)))
    body = server.chat_requests[0].json
    assert body["messages"][-1] == {"role": "assistant", "content": "Answer:"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def check_no_key(*texts: str) -> None:
    for text in texts:  # no fragment either (a message cut mid-key would leak one)
        assert KEY[:12] not in text and KEY[-12:] not in text


def measurement_texts(out: Measurements) -> list[str]:
    texts = [repr(out), *(str(e) for e in out.error), *(str(r) for r in out.response or [])]
    return texts + [repr(v) for v in out.extra.values()]


def test_key_is_sent_as_bearer_and_never_leaks(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    victim = TEMPLATE.user_message(OUTCOMES[0], OUTCOMES[1])
    server.fault_fn = lambda i, body: "echo_key_400" if last_user_text(body) == victim else None
    server.script = ["429", "500"]
    caplog.set_level(logging.DEBUG)
    scorer = make(server, mode=ModeConfig(kind="sample", k=2))
    out = scorer.score(all_pairs())
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.chat_requests)
    assert all(KEY not in r.body for r in server.chat_requests)
    assert out.error[0] is not None and "Incorrect API key provided: ***" in out.error[0]
    server.fault_fn, server.rates = None, {"echo_key_400": 1.0}
    with pytest.raises(ErrorBudgetExceeded) as info:
        scorer.score(all_pairs())
    check_no_key(
        *measurement_texts(out),
        repr(scorer),
        str(scorer),
        repr(vars(scorer)),
        str(info.value),
        repr(info.value),
        caplog.text,
    )
    scorer.close()


def test_missing_key_variable_is_a_clear_error(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ScorerError, match=KEY_ENV) as info:
        make(server)
    assert "unset or empty" in str(info.value)


def test_no_key_variable_sends_no_authorization(server: FakeOpenAIServer) -> None:
    with make(server, api_key_env=None) as scorer:
        scorer.score(all_pairs().take(slice(0, 2)))
    assert all("Authorization" not in r.headers for r in server.chat_requests)


def test_concurrency_bound_is_respected(server: FakeOpenAIServer) -> None:
    server.delay_s = 0.03
    with make(server, max_concurrency=3) as scorer:
        out = scorer.score(all_pairs())
    assert out.error == [None] * 30
    assert server.max_in_flight == 3


def test_score_works_inside_a_running_event_loop(server: FakeOpenAIServer) -> None:
    # as in an async Ray actor or a notebook: score() is called while a loop runs
    scorer = make(server)

    async def inside() -> Measurements:
        return scorer.score(all_pairs().take(slice(0, 4)))

    out = asyncio.run(inside())
    again = scorer.score(all_pairs().take(slice(0, 4)))  # and the loop survives across calls
    scorer.close()
    scorer.close()
    assert out.error == [None] * 4 and np.allclose(out.p_a, again.p_a)


def test_make_scorer_builds_the_openai_scorer(server: FakeOpenAIServer) -> None:
    config = ModelConfig(name="m", scorer="openai", base_url=server.base_url, api_key_env=KEY_ENV)
    with make_scorer(config, ModeConfig(), TEMPLATE, OUTCOMES) as scorer:
        assert isinstance(scorer, OpenAIScorer)
        out = scorer.score(all_pairs().take(slice(0, 1)))
    assert math.isclose(out.p_a[0], fake_p_a(TEMPLATE.user_message(OUTCOMES[0], OUTCOMES[1])))


def test_base_format_is_refused(server: FakeOpenAIServer) -> None:
    template = PromptTemplate("t", DEFAULT_TEMPLATE, None, format="base")
    with pytest.raises(ScorerError, match="format 'base'"):
        make(server, template=template)
