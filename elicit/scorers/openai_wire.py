"""The HTTP side of the openai scorer: its event-loop thread, secrets, and reading answers.

Kept apart from :mod:`elicit.scorers.openai` (which decides what to ask and how to retry) so
each reads on its own: nothing here knows about prompts, modes or budgets.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Coroutine
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import numpy as np

from elicit.errors import ScorerError

T = TypeVar("T")

_USERINFO = re.compile(r"//[^/@]*@")


class Secret:
    """A string that never shows itself in a repr, str or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class Malformed(ValueError):
    """A 200 answer without the fields we need."""


class NoLogprobs(Exception):
    """A well-formed answer that carries no log-probabilities."""


class LoopThread:
    """An asyncio loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: stop the requests too
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


# -- answer extraction ---------------------------------------------------------------------


def choices(data: Any) -> list[dict[str, Any]]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise Malformed("no choices")
    if not all(isinstance(c, dict) for c in choices):
        raise Malformed("a choice is not an object")
    return choices


def top_logprobs(data: Any) -> dict[str, float]:
    """token → log-probability from ``choices[0].logprobs.content[0].top_logprobs``."""
    logprobs = choices(data)[0].get("logprobs")
    if logprobs is None or (isinstance(logprobs, dict) and logprobs.get("content") is None):
        raise NoLogprobs
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        raise Malformed("logprobs.content is empty or not a list of objects")
    top = content[0].get("top_logprobs")
    if not top:
        raise NoLogprobs
    if not isinstance(top, list):
        raise Malformed("top_logprobs is not a list")
    out: dict[str, float] = {}
    for entry in top:
        token = entry.get("token") if isinstance(entry, dict) else None
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            raise Malformed(f"bad top_logprobs entry {entry!r}")
        # distinct token ids can decode to the same string: add their probabilities
        out[token] = float(np.logaddexp(out[token], logprob)) if token in out else float(logprob)
    return out


def completions(data: Any) -> list[str]:
    """Completion texts of every choice, in ``index`` order (null content reads as "")."""
    texts: list[tuple[int, str]] = []
    for position, choice in enumerate(choices(data)):
        message = choice.get("message")
        if not isinstance(message, dict):
            raise Malformed("a choice has no message")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise Malformed("message.content is not text")
        index = choice.get("index")
        texts.append((index if isinstance(index, int) else position, content or ""))
    return [text for _, text in sorted(texts, key=lambda pair: pair[0])]


# -- helpers -------------------------------------------------------------------------------


def read_key(env_name: str | None) -> Secret | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ScorerError(
            f"api_key_env names the environment variable {env_name!r}, which is unset or empty; "
            f"export {env_name}=<your key> where the scorer runs (or set api_key_env: null for an "
            "endpoint without a key)"
        )
    return Secret(value)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, else ``Retry-After`` (seconds
    or an HTTP date); None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(raw).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, IndexError):
        return None


def error_text(response: httpx.Response) -> str:
    """The server's error message: ``error.message`` when JSON, else the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) else response.text


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_CREDENTIALS = re.compile(
    r"(?i)(?P<head>\b(?:authorization|proxy-authorization|x-api-key|api[-_ ]?key|access[-_ ]?token"
    r"|password|secret)\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic)\s+)?)[^\s\"',;]+"
    r"|(?P<scheme>\b(?-i:Bearer|Basic)\s+)(?=[A-Za-z0-9._~+/=-]*[0-9+/=])[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{6,}"
)


def scrub(text: str) -> str:
    """``text`` with anything shaped like a credential replaced by ``***``: header values
    (``Authorization: Bearer …``, ``x-api-key: …``), ``Basic``/``Bearer`` tokens, ``api_key=…``,
    ``sk-…`` keys and URL userinfo. Servers echo such things back in error messages."""
    text = _USERINFO.sub("//***@", text)

    def _mask(m: re.Match[str]) -> str:
        return (m.group("head") or m.group("scheme") or "") + "***"

    return _CREDENTIALS.sub(_mask, text)


def safe_url(url: str) -> str:
    """The URL without user:password@ (shown in reprs, logs and errors)."""
    return _USERINFO.sub("//", url)
