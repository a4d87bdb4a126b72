"""A small OpenAI-compatible HTTP server of our own, for testing the ``openai`` scorer.

It listens on 127.0.0.1 (a free port), answers ``POST /v1/chat/completions`` with deterministic
answers derived from the prompt text, injects faults on demand and records every request it
receives. No network beyond the loopback interface is touched.

The answer to a prompt: when the last user message contains two markers ``u=<number>`` (one in
each option), P(A) = sigmoid(u_first - u_second); otherwise a value in [0.05, 0.95] derived from
a hash of the text (:func:`fake_p_a`). In ``logprobs`` mode the letters get ``mass`` of the
next-token probability, spread over the tokens ``" A"``, ``"A"`` and ``"B"``; sampled answers are
"A" for the first round(P(A)·n) choices and "B" for the rest.

Faults (names accepted in ``script``, ``rates`` and the return value of ``fault_fn``):

- ``"429"``: rate limited, with a ``Retry-After`` header (``retry_after``, seconds).
- ``"500"``, ``"502"``, ``"503"``: server errors; ``"400"``, ``"401"``, ``"404"``: client errors.
- ``"echo_key_400"``: a 400 whose long message ends by quoting the key it received, as some
  APIs do ("Incorrect API key provided: ...") — the client must not pass any of it on.
- ``"timeout"``: the server sits on the request for ``hang_s`` seconds before answering.
- ``"disconnect"``: the connection is closed without a response.
- ``"malformed_json"``: a 200 whose body is not JSON; ``"missing_fields"``: JSON without
  ``choices``.
- ``"no_logprobs"``: a normal answer with ``"logprobs": null``.

Usage::

    with FakeOpenAIServer(script=["429", "500"]) as server:
        ... ModelConfig(scorer="openai", base_url=server.base_url) ...
        assert server.max_in_flight <= 4
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FaultFn = Callable[[int, dict[str, Any]], str | None]
"""(request index, request body) → fault name or None; consulted before ``script``."""

_MARKER = re.compile(r"u=(-?\d+(?:\.\d+)?)")
_FILLERS = (" I", " Option", " The", " Neither", "I", " Both", " It", " My")


def fake_p_a(text: str) -> float:
    """P(A) the fake model gives a prompt whose last user message is ``text``."""
    values = [float(v) for v in _MARKER.findall(text)]
    if len(values) >= 2:
        p = 1.0 / (1.0 + math.exp(-(values[0] - values[1])))
    else:
        digest = hashlib.sha256(text.encode()).digest()
        p = 0.05 + 0.9 * int.from_bytes(digest[:4], "big") / 2**32
    return min(max(p, 1e-6), 1 - 1e-6)


def last_user_text(body: dict[str, Any]) -> str:
    """Content of the last user message of a chat request body."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: str
    """Raw request body text."""
    json: Any
    """Parsed body (None when it was not JSON)."""
    fault: str | None
    """Fault injected into the answer, None for a normal answer."""


class FakeOpenAIServer:
    """OpenAI-compatible chat-completions server on 127.0.0.1 for tests (a context manager).

    Args:
        script: faults for the first requests in arrival order (None or "ok" = answer normally).
        rates: fault name → probability, applied once ``script`` is used up (seeded RNG).
        fault_fn: consulted first for every request; returns a fault name or None.
        retry_after: value of the Retry-After header on 429 answers (None = no header).
        hang_s: how long a ``timeout`` fault sits on the request.
        delay_s: latency added to every normal answer (seconds), or a function of the request
            body giving it (lets tests make later requests finish first).
        mass: probability the fake model puts on the two letters in logprob answers.
        supports_logprobs: False answers every request with ``"logprobs": null``.
        supports_n: False returns one choice whatever ``n`` asks for (as some endpoints do).
        unparseable_every: every m-th sampled choice (counting from 1) is "I cannot decide".
        reasoning: sampled answers are "Thinking... Answer: X" instead of a bare letter.
        seed: seed of the fault-rate RNG and of the single-choice sampler.
    """

    def __init__(
        self,
        *,
        script: list[str | None] | None = None,
        rates: dict[str, float] | None = None,
        fault_fn: FaultFn | None = None,
        retry_after: str | None = "0",
        hang_s: float = 2.0,
        delay_s: float | Callable[[dict[str, Any]], float] = 0.0,
        mass: float = 0.9,
        supports_logprobs: bool = True,
        supports_n: bool = True,
        unparseable_every: int = 0,
        reasoning: bool = False,
        seed: int = 0,
    ) -> None:
        self.script = list(script or [])
        self.rates = dict(rates or {})
        self.fault_fn = fault_fn
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.delay_s = delay_s
        self.mass = mass
        self.supports_logprobs = supports_logprobs
        self.supports_n = supports_n
        self.unparseable_every = unparseable_every
        self.reasoning = reasoning
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:40123/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.02,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sitting on a "timeout" fault
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection ---------------------------------------------------------------------

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Requests to the chat-completions route, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def faults_served(self) -> dict[str, int]:
        """How many answers carried each fault."""
        counts: dict[str, int] = {}
        with self._lock:
            for r in self.requests:
                if r.fault:
                    counts[r.fault] = counts.get(r.fault, 0) + 1
        return counts

    # -- request handling (called from handler threads) ------------------------------------

    def _pick_fault(self, index: int, body: dict[str, Any]) -> str | None:
        if self.fault_fn is not None:
            fault = self.fault_fn(index, body)
            if fault:
                return fault
        with self._lock:
            if self.script:
                fault = self.script.pop(0)
                return None if fault in (None, "ok") else fault
            for name, rate in self.rates.items():
                if self._rng.random() < rate:
                    return name
        return None

    def _answer(self, body: dict[str, Any], fault: str | None) -> dict[str, Any]:
        text = last_user_text(body)
        p = fake_p_a(text)
        n = int(body.get("n") or 1)
        if not self.supports_n:
            n = 1
        choices = []
        if n == 1 and int(body.get("max_tokens") or 16) > 1:
            # single samples (e.g. a client that sends K separate requests) are drawn at random
            with self._lock:
                letters = ["A" if self._rng.random() < p else "B"]
        else:
            n_a = round(p * n)
            letters = ["A" if j < n_a else "B" for j in range(n)]
        for j, letter in enumerate(letters):
            content = letter
            if self.unparseable_every and (j + 1) % self.unparseable_every == 0:
                content = "I cannot decide."
            elif self.reasoning:
                content = f"Weighing both options carefully.\nAnswer: {letter}"
            choice: dict[str, Any] = {
                "index": j,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "length",
            }
            if body.get("logprobs") and self.supports_logprobs and fault != "no_logprobs":
                choice["logprobs"] = {"content": [self._token_logprobs(p, body)]}
            choices.append(choice)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": len(text.split()),
                "completion_tokens": n,
                "total_tokens": 0,
            },
        }

    def _token_logprobs(self, p: float, body: dict[str, Any]) -> dict[str, Any]:
        probs = {" A": 0.7 * p * self.mass, "A": 0.3 * p * self.mass, "B": (1 - p) * self.mass}
        rest = (1 - self.mass) / len(_FILLERS)
        probs.update({token: rest for token in _FILLERS})
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])[: int(body.get("top_logprobs") or 0)]
        top = [
            {"token": t, "logprob": math.log(q), "bytes": list(t.encode())}
            for t, q in ranked
            if q > 0
        ]
        best = top[0] if top else {"token": " A", "logprob": math.log(probs[" A"]), "bytes": []}
        return {**best, "top_logprobs": top}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; a short backlog stalls them
    fake: FakeOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    timeout = 10  # idle keep-alive connections give their thread back eventually
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass  # tests stay quiet

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with fake._lock:
            index = len(fake.requests)
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        fault: str | None = None
        try:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._record(raw, body, None)
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not isinstance(body, dict) or "model" not in body or "messages" not in body:
                self._record(raw, body, None)
                self._send_json(400, {"error": {"message": "body needs model and messages"}})
                return
            fault = fake._pick_fault(index, body)
            self._record(raw, body, fault)
            self._serve(fake, body, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _record(self, raw: str, body: Any, fault: str | None) -> None:
        fake = self.server.fake
        with fake._lock:
            fake.requests.append(
                RecordedRequest("POST", self.path, dict(self.headers.items()), raw, body, fault)
            )

    def _serve(self, fake: FakeOpenAIServer, body: dict[str, Any], fault: str | None) -> None:
        if fault == "timeout":
            fake._stopping.wait(fake.hang_s)
        elif fault == "disconnect":
            self.close_connection = True
            return
        elif fault == "429":
            headers = {"Retry-After": fake.retry_after} if fake.retry_after is not None else {}
            self._send_json(
                429, {"error": {"message": "rate limited", "type": "rate_limit"}}, headers
            )
            return
        elif fault == "echo_key_400":
            seen = self.headers.get("Authorization", "")
            # long enough that a client cutting the message at ~300 characters cuts the key
            padding = "Request rejected. " * 13
            message = f"{padding}Incorrect API key provided: {seen.removeprefix('Bearer ')}"
            self._send_json(400, {"error": {"message": message, "type": "invalid_request"}})
            return
        elif fault is not None and fault.isdigit():
            self._send_json(int(fault), {"error": {"message": f"injected {fault}", "type": "test"}})
            return
        elif fault == "malformed_json":
            self._send_raw(200, b'{"choices": [ {"index": 0, "message": ', "application/json")
            return
        elif fault == "missing_fields":
            self._send_json(200, {"id": "chatcmpl-x", "object": "chat.completion"})
            return
        delay = fake.delay_s(body) if callable(fake.delay_s) else fake.delay_s
        if delay > 0:
            time.sleep(delay)
        self._send_json(200, fake._answer(body, fault))

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    """A started :class:`FakeOpenAIServer` with no faults; tests set its attributes."""
    with FakeOpenAIServer() as server:
        yield server
