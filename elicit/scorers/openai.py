"""Scorer for any OpenAI-compatible chat-completions endpoint (hosted APIs, a vLLM server).

Requests run on an asyncio loop in a private background thread, so :meth:`OpenAIScorer.score` is
an ordinary blocking call that works anywhere: a script, a Ray actor (sync or async), a notebook.
At most ``model.max_concurrency`` HTTP requests are in flight per scorer.

Modes:

- ``logprob``: one token (``max_tokens: 1``, ``temperature: 0``) with ``logprobs: true`` and
  ``top_logprobs``; ``choices[0].logprobs.content[0].top_logprobs`` → :func:`letter_probs`.
  Temperature 0 also makes vLLM return untruncated log-probabilities (no top-p / top-k). An
  endpoint that answers without log-probabilities makes the scorer fall back, once and for the
  rest of its life, to ``sample`` mode (a warning is logged; :attr:`OpenAIScorer.effective_mode`
  says which mode rows were measured in).
- ``sample``: ``n: k`` completions at ``temperature``; an endpoint that ignores or rejects ``n``
  gets k single requests instead. Each completion → :func:`parse_letter`; P(A) from the counts
  under the ``unparseable`` policy.
- ``reasoning``: as ``sample``, parsed with :func:`parse_reasoning`.

In ``sample`` / ``reasoning`` mode ``response`` holds the completions as a JSON array of strings.

A non-empty ``answer_prefix`` is sent as a final assistant message together with vLLM's extra
body fields ``continue_final_message: true, add_generation_prompt: false``, so the model continues
the assistant turn. Endpoints other than vLLM may reject those fields (HTTP 400); leave
``answer_prefix`` empty for them.

Failures: 429, 408, 409, 5xx, timeouts and connection errors are retried up to
``model.max_retries`` times with exponential back-off and full jitter (at least the server's
``Retry-After``); a malformed 200 answer is retried twice; any other 4xx fails at once. A query
that still fails becomes a row with ``error`` set. When the failed share of a batch, or of all
queries so far, exceeds ``model.error_budget`` (counted once there are 20 queries),
:class:`ErrorBudgetExceeded` stops the run.

The API key is read from the environment variable named by ``model.api_key_env`` and sent only
as ``Authorization: Bearer …``; it is kept out of reprs, logs, errors and results (text an
endpoint echoes back is redacted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import numpy as np

from elicit.budget import over_budget
from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ErrorBudgetExceeded, ScorerError
from elicit.parsing import count_letters, counts_to_p, letter_probs, parse_letter, parse_reasoning
from elicit.prompts import PromptTemplate
from elicit.scorers.base import Measurements, QueryBatch, Scorer
from elicit.scorers.hf import registry_entry, resolve_chat_kwargs
from elicit.scorers.openai_wire import (
    LoopThread,
    NoLogprobs,
    completions,
    error_text,
    read_key,
    retry_after_s,
    safe_url,
    scrub,
    short,
    top_logprobs,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses worth retrying besides 5xx: request timeout, conflict, rate limit.
RETRYABLE_4XX = frozenset({408, 409, 429})
#: Client errors that may mean "n > 1 is not supported" (then k single requests are tried).
_N_REJECTED = frozenset({400, 422})


@dataclass
class RequestStats:
    """HTTP traffic of one scorer, cumulative over batches."""

    queries: int = 0
    """Queries answered (rows produced), failed ones included."""
    failed: int = 0
    """Queries that ended as error rows."""
    requests: int = 0
    """HTTP requests sent (retries and sample sub-requests included)."""
    retries: int = 0
    """Requests that were repeats of a failed attempt."""
    retry_reasons: Counter[str] = field(default_factory=Counter)
    """Why attempts were retried: ``http_429``, ``http_503``, ``timeout``, ``connection``,
    ``malformed``."""
    errors: Counter[str] = field(default_factory=Counter)
    """Why queries failed for good (same keys, plus non-retryable statuses like ``http_400``)."""


class _QueryFailed(Exception):
    def __init__(self, kind: str, message: str, attempts: int, latency_ms: float) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.attempts = attempts
        self.latency_ms = latency_ms


@dataclass
class _Row:
    p_a: float = math.nan
    p_b: float = math.nan
    lp_a: float = math.nan
    lp_b: float = math.nan
    mass: float = math.nan
    counts: tuple[int, int, int] | None = None
    response: str | None = None
    error: str | None = None
    kind: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0


class OpenAIScorer(Scorer):
    """Scores queries through an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: ``base_url``, ``path or name`` (the model id sent), ``api_key_env``,
            ``max_concurrency``, ``max_retries``, ``timeout_s`` (per request) and
            ``error_budget`` are used.
        mode: ``logprob``, ``sample`` or ``reasoning`` (see the module docstring).
        template: the resolved prompt; ``format: base`` is not supported (chat endpoint).
        outcome_texts: texts the query indices point into.
        backoff_base_s: first back-off ceiling; the n-th retry sleeps U(0, base·2^(n-1)) seconds.
        backoff_max_s: largest back-off ceiling.
        retry_after_max_s: largest ``Retry-After`` honoured (seconds).
        malformed_retries: retries of a 200 answer that lacks the needed fields.
        seed: seeds the back-off jitter and the ``random`` unparseable policy.

    Raises:
        ScorerError: no ``base_url``, the key variable is unset, or ``format: base``.
    """

    def __init__(
        self,
        model: ModelConfig,
        mode: ModeConfig,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        malformed_retries: int = 2,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, mode, template, outcome_texts)
        if not model.base_url:
            raise ScorerError(
                f"model {model.name!r}: the openai scorer needs base_url "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        if template.format == "base":
            raise ScorerError(
                f"model {model.name!r}: prompt.format 'base' is not supported by the openai "
                "scorer (it talks to /chat/completions); use format 'chat' or 'auto'"
            )
        self.model_id = model.path or model.name
        self.base_url = safe_url(model.base_url.rstrip("/"))
        self._url = model.base_url.rstrip("/") + "/chat/completions"
        self._key = read_key(model.api_key_env)
        self._chat_kwargs = resolve_chat_kwargs(model, registry_entry(model), mode)
        self.effective_mode: str = mode.kind
        """Mode rows are measured in: ``mode.kind`` unless logprob fell back to ``sample``."""
        self.stats = RequestStats()
        self._backoff_base = backoff_base_s
        self._backoff_max = backoff_max_s
        self._retry_after_max = retry_after_max_s
        self._malformed_retries = malformed_retries
        seed = model.seed if seed is None else seed
        self._jitter = random.Random(seed)
        self._policy_rng = np.random.default_rng(seed)
        self._use_n = mode.k > 1  # False once the endpoint is seen to ignore or reject n
        self._n_confirmed = False  # True once an n=k request returned k choices
        self._runner: LoopThread | None = None
        self._runner_lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAIScorer(model={self.model_id!r}, base_url={self.base_url!r}, "
            f"mode={self.effective_mode!r}, api_key_env={self.model.api_key_env!r})"
        )

    # -- public ----------------------------------------------------------------------------

    def score(self, batch: QueryBatch) -> Measurements:
        """Measure every query of the batch, in query order (blocks until done).

        Raises:
            ErrorBudgetExceeded: too many queries failed (in this batch or in all so far).
        """
        if len(batch) == 0:
            return Measurements.empty(0)
        with self._runner_lock:
            if self._runner is None:
                self._runner = LoopThread(f"openai-scorer-{self.model_id}")
                self._finalizer = weakref.finalize(self, self._runner.stop)
            runner = self._runner
        return runner.run(self._score(batch))

    def close(self) -> None:
        """Close the HTTP connections and stop the background loop (idempotent)."""
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._client is not None:
            try:
                runner.run(self._client.aclose())
            finally:
                self._client = None
        runner.stop()
        if self._finalizer is not None:
            self._finalizer.detach()

    # -- batch -----------------------------------------------------------------------------

    async def _score(self, batch: QueryBatch) -> Measurements:
        if self._client is None:
            limit = self.model.max_concurrency
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.model.timeout_s),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            )
            self._sem = asyncio.Semaphore(limit)
        n = len(batch)
        a_idx = np.asarray(batch.a_idx).tolist()
        b_idx = np.asarray(batch.b_idx).tolist()
        tasks = [asyncio.ensure_future(self._one(i, a_idx[i], b_idx[i])) for i in range(n)]
        rows: list[_Row | None] = [None] * n
        failed: Counter[str] = Counter()
        first_error: str | None = None
        done = 0
        try:
            for next_done in asyncio.as_completed(tasks):
                i, row = await next_done
                rows[i] = row
                done += 1
                if row.error is not None:
                    failed[row.kind or "error"] += 1
                    first_error = first_error or row.error
                    self._check_budget(n, done, failed, first_error, final=False)
            self._check_budget(n, done, failed, first_error, final=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._measurements([r for r in rows if r is not None])

    def _check_budget(
        self, n: int, done: int, failed: Counter[str], first_error: str | None, *, final: bool
    ) -> None:
        """Raise once the budget is certainly exceeded: failures so far already exceed the
        budget's share of the whole batch (so the check never fires on an early bad streak)."""
        budget = self.model.error_budget
        n_failed = sum(failed.values())
        total = self.stats.queries + n
        total_failed = self.stats.failed + n_failed
        over_batch = over_budget(n_failed, n, budget)
        over_total = over_budget(total_failed, total, budget)
        if final or over_batch or over_total:
            self.stats.queries += done
            self.stats.failed += n_failed
            self.stats.errors.update(failed)
        if not (over_batch or over_total):
            return
        common = ", ".join(f"{kind} ×{count}" for kind, count in failed.most_common(3))
        scope = (
            f"{n_failed} of {n} queries in this batch"
            if over_batch
            else f"{total_failed} of {total} queries so far"
        )
        raise ErrorBudgetExceeded(
            self._redact(
                f"model {self.model_id!r} at {self.base_url}: {scope} failed "
                f"({'final count' if final else f'{done} of {n} answered'}; "
                f"{self.stats.failed} of {self.stats.queries} in all), over the error budget of "
                f"{budget:.1%}. Most common: {common}. First error: {first_error}. Check that "
                "the endpoint is up and the model id and key are right, or raise "
                "model.error_budget"
            )
        )

    def _measurements(self, rows: list[_Row]) -> Measurements:
        out = Measurements.empty(len(rows))
        out.p_a[:] = [r.p_a for r in rows]
        out.p_b[:] = [r.p_b for r in rows]
        out.lp_a[:] = [r.lp_a for r in rows]
        out.lp_b[:] = [r.lp_b for r in rows]
        out.mass[:] = [r.mass for r in rows]
        out.latency_ms[:] = [r.latency_ms for r in rows]
        out.error = [r.error for r in rows]
        out.extra["attempts"] = np.array([r.attempts for r in rows], dtype=np.int32)
        sampled = [i for i, r in enumerate(rows) if r.counts is not None]
        if self.effective_mode != "logprob" or sampled:
            counts = np.zeros((len(rows), 3), dtype=np.int32)
            for i in sampled:
                counts[i] = rows[i].counts or (0, 0, 0)
            out.n_a, out.n_b, out.n_unparsed = counts[:, 0], counts[:, 1], counts[:, 2]
            out.response = [r.response for r in rows]
            ok = np.array([i for i in sampled if rows[i].error is None], dtype=np.int64)
            if len(ok):
                n_a, n_b, n_u = counts[ok, 0], counts[ok, 1], counts[ok, 2]
                p_a = counts_to_p(n_a, n_b, n_u, self.mode.unparseable, self._policy_rng)
                out.p_a[ok] = p_a
                out.p_b[ok] = 1.0 - p_a
        return out

    # -- one query -------------------------------------------------------------------------

    async def _one(self, i: int, a: int, b: int) -> tuple[int, _Row]:
        messages = self._messages(a, b)
        try:
            if self.effective_mode == "logprob":
                try:
                    top, latency, attempts = await self._request(
                        self._body(messages, logprobs=True), top_logprobs
                    )
                except NoLogprobs:
                    self._fall_back()
                else:
                    p_a, p_b, lp_a, lp_b, mass = letter_probs(top)
                    return i, _Row(
                        p_a, p_b, lp_a, lp_b, mass, latency_ms=latency, attempts=attempts
                    )
            texts, latency, attempts = await self._sample(messages)
        except _QueryFailed as exc:
            row = _Row(
                error=self._redact(exc.message),
                kind=exc.kind,
                latency_ms=exc.latency_ms,
                attempts=exc.attempts,
            )
            return i, row
        parse = parse_reasoning if self.mode.kind == "reasoning" else parse_letter
        counts = count_letters(parse(text) for text in texts)
        response = self._redact(json.dumps(texts, ensure_ascii=False))
        return i, _Row(counts=counts, response=response, latency_ms=latency, attempts=attempts)

    def _messages(self, a: int, b: int) -> list[dict[str, str]]:
        messages = self.template.messages(
            self.outcome_texts[a],
            self.outcome_texts[b],
            system_role=self.model.system_role is not False,
        )
        if self.template.answer_prefix:
            messages.append({"role": "assistant", "content": self.template.answer_prefix})
        return messages

    def _body(
        self, messages: list[dict[str, str]], *, logprobs: bool, n: int = 1
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_id, "messages": messages}
        if logprobs:
            body.update(
                max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self.mode.top_logprobs
            )
        else:
            body.update(max_tokens=self.mode.max_tokens, temperature=self.mode.temperature)
            if n > 1:
                body["n"] = n
        if self._chat_kwargs:
            body["chat_template_kwargs"] = self._chat_kwargs  # vLLM / SGLang extension
        if self.template.answer_prefix:
            # vLLM extension: continue the assistant turn that starts with the prefix
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _fall_back(self) -> None:
        if self.effective_mode == "logprob":
            self.effective_mode = "sample"
            logger.warning(
                "endpoint %s returned no log-probabilities for model %r; falling back to sample "
                "mode (k=%d, temperature=%g) for the rest of this scorer's life",
                self.base_url,
                self.model_id,
                self.mode.k,
                self.mode.temperature,
            )

    async def _sample(self, messages: list[dict[str, str]]) -> tuple[list[str], float, int]:
        """k completions: one request with n=k, or k single requests where n is unsupported."""
        k = self.mode.k
        texts: list[str] = []
        latency, attempts = 0.0, 0
        if self._use_n:
            try:
                texts, latency, attempts = await self._request(
                    self._body(messages, logprobs=False, n=k), completions
                )
            except _QueryFailed as exc:
                status = int(exc.kind[5:]) if exc.kind.startswith("http_") else 0
                if self._n_confirmed or status not in _N_REJECTED:
                    raise
                # maybe the endpoint rejects n > 1: single requests decide below
                more, more_latency, more_attempts = await self._singles(messages, k)
                self._disable_n(f"it answered n={k} with {exc.message}")
                return more, max(exc.latency_ms, more_latency), exc.attempts + more_attempts
            if len(texts) >= k:
                self._n_confirmed = True
                return texts[:k], latency, attempts
            if len(texts) <= 1:
                self._disable_n(f"it answered n={k} with {len(texts)} choice(s)")
        more, more_latency, more_attempts = await self._singles(messages, k - len(texts))
        return texts + more, max(latency, more_latency), attempts + more_attempts

    async def _singles(
        self, messages: list[dict[str, str]], count: int
    ) -> tuple[list[str], float, int]:
        body = self._body(messages, logprobs=False)
        results = await asyncio.gather(
            *(self._request(body, completions) for _ in range(count)), return_exceptions=True
        )
        texts: list[str] = []
        latency, attempts = 0.0, 0
        for result in results:
            if isinstance(result, BaseException):
                raise result
            texts.extend(result[0][:1])
            latency = max(latency, result[1])
            attempts += result[2]
        return texts, latency, attempts

    def _disable_n(self, why: str) -> None:
        if self._use_n:
            self._use_n = False
            logger.warning(
                "endpoint %s does not support n>1 for model %r (%s); sending %d single requests "
                "per prompt instead",
                self.base_url,
                self.model_id,
                self._redact(why),
                self.mode.k,
            )

    # -- one HTTP exchange with retries ----------------------------------------------------

    async def _request(
        self, body: dict[str, Any], extract: Callable[[Any], T]
    ) -> tuple[T, float, int]:
        """POST ``body`` until ``extract`` accepts the answer.

        Returns (extracted value, latency of the successful attempt in ms, attempts made).
        Raises _QueryFailed when retries are used up or the failure is not retryable, and
        NoLogprobs straight from ``extract``.
        """
        assert self._client is not None and self._sem is not None
        headers = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}
        attempts = malformed = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            response: httpx.Response | None = None
            async with self._sem:
                self.stats.requests += 1
                start = time.perf_counter()
                try:
                    response = await asyncio.wait_for(
                        self._client.post(self._url, json=body, headers=headers),
                        self.model.timeout_s,
                    )
                except (TimeoutError, httpx.TimeoutException):
                    kind, detail = "timeout", f"no answer within {self.model.timeout_s:g} s"
                except httpx.RequestError as exc:
                    kind, detail = "connection", f"connection error ({type(exc).__name__}: {exc})"
                latency = (time.perf_counter() - start) * 1000.0
            if response is not None:
                status = response.status_code
                if status == 200:
                    try:
                        return extract(response.json()), latency, attempts
                    except ValueError as exc:  # bad JSON or Malformed
                        kind, detail = "malformed", f"malformed answer ({exc})"
                        malformed += 1
                else:
                    kind, detail = f"http_{status}", f"HTTP {status}: {error_text(response)}"
                    retry_after = retry_after_s(response.headers)
            # redact before shortening, so that no fragment of an echoed key survives the cut
            detail = short(self._redact(detail))
            if kind.startswith("http_4") and int(kind[5:]) not in RETRYABLE_4XX:
                raise _QueryFailed(kind, detail, attempts, latency)
            if attempts > self.model.max_retries or malformed > self._malformed_retries:
                tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                raise _QueryFailed(kind, f"{detail}; gave up after {tries}", attempts, latency)
            ceiling = min(self._backoff_max, self._backoff_base * 2 ** (attempts - 1))
            delay = self._jitter.uniform(0.0, ceiling)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._retry_after_max))
            self.stats.retries += 1
            self.stats.retry_reasons[kind] += 1
            logger.debug(
                "model %r: %s; retry %d/%d in %.2f s",
                self.model_id,
                detail,
                attempts,
                self.model.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _redact(self, text: str) -> str:
        if self._key and self._key.reveal() in text:
            text = text.replace(self._key.reveal(), "***")
        return scrub(text)
