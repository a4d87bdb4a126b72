"""Open a page in Debian's headless Chromium and report what a person would see.

Speaks the DevTools protocol over a websocket (aiohttp, already a dependency through Ray): load
the page, collect console errors and uncaught exceptions, decode every image, measure whether
the page scrolls sideways, and take a full-page screenshot. ``scripts/test`` installs the
``chromium`` package; tests that need it skip without it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


@dataclass
class PageCheck:
    """What loading a page showed."""

    errors: list[str] = field(default_factory=list)
    """Console errors, failed loads and uncaught exceptions."""
    images: list[tuple[str, int]] = field(default_factory=list)
    """(alt text, natural width) per image; width -1 when the image failed to decode."""
    page_width: int = 0
    """Width of the document (scrollWidth)."""
    viewport_width: int = 0
    screenshot: bytes = b""
    """Full-page PNG."""


async def _inspect(ws_url: str, url: str, width: int, height: int) -> PageCheck:
    import aiohttp

    check = PageCheck()
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        pending: dict[int, asyncio.Future[Any]] = {}
        loaded = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.exceptionThrown":
                    check.errors.append(str(params["exceptionDetails"].get("text")))
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    check.errors.append(" ".join(str(a.get("value")) for a in params["args"]))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    check.errors.append(params["entry"]["text"])

        async def call(method: str, session: str | None = None, **params: Any) -> Any:
            n = next(ids)
            pending[n] = asyncio.get_running_loop().create_future()
            message: dict[str, Any] = {"id": n, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            await ws.send_str(json.dumps(message))
            reply = await asyncio.wait_for(pending[n], 60)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]

        task = asyncio.create_task(reader())
        target = await call("Target.createTarget", url="about:blank")
        session = (await call("Target.attachToTarget", targetId=target["targetId"], flatten=True))[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable", session)
        await call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await call("Page.navigate", session, url=url)
        await asyncio.wait_for(loaded.wait(), 60)
        decoded = await call(
            "Runtime.evaluate",
            session,
            expression=(
                "Promise.all([...document.images].map(i => i.decode()"
                ".then(() => [i.alt, i.naturalWidth], () => [i.alt, -1])))"
            ),
            awaitPromise=True,
            returnByValue=True,
        )
        check.images = [tuple(x) for x in decoded["result"]["value"]]
        sizes = await call(
            "Runtime.evaluate",
            session,
            expression="[document.documentElement.scrollWidth, window.innerWidth]",
            returnByValue=True,
        )
        check.page_width, check.viewport_width = sizes["result"]["value"]
        shot = await call(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        check.screenshot = base64.b64decode(shot["data"])
        task.cancel()
    return check


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and every helper process it started (its own session)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def check_page(path: str | Path, *, width: int = 1280, height: int = 900) -> PageCheck:
    """Load a local HTML file in headless Chromium; see :class:`PageCheck`."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (scripts/test installs Debian's package)")
    # Chromium's helper processes (zygote, renderer, crashpad) outlive the main
    # one by a moment and keep writing to the profile, so the whole process group
    # is stopped and a late write cannot fail the temporary directory's cleanup.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile, "DevToolsActivePort")
            deadline = time.monotonic() + 60
            while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port, ws_path = port_file.read_text().splitlines()[:2]
            url = Path(path).resolve().as_uri()
            return asyncio.run(_inspect(f"ws://127.0.0.1:{port}{ws_path}", url, width, height))
        finally:
            _stop_group(proc)
