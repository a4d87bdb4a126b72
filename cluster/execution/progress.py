"""Progress display owned by the driver: rich bars on a terminal, plain lines in pods and CI,
nothing in tests. Workers only report counters."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Literal

Style = Literal["auto", "rich", "plain", "none"]


class Progress:
    """Counts the units of one task (prompts of a round, steps of a fine-tuning) and shows rate,
    ETA, errors and an optional note (e.g. the running loss)."""

    def __init__(
        self,
        description: str,
        total: int,
        style: Style = "auto",
        every_s: float = 10.0,
        unit: str = "prompts",
    ):
        self.description = description
        self.unit = unit
        self.note = ""
        self.total = total
        self.done = 0
        self.errors = 0
        self.start = time.perf_counter()
        self._last_line = self.start
        self.every_s = every_s
        if style == "auto":
            style = "rich" if sys.stderr.isatty() else "plain"
        self.style = style
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.style == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(f"{{task.fields[rate]:>9}} {self.unit}/s"),
                TextColumn("errors {task.fields[errors]}"),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._rich.__enter__()
            self._task = self._rich.add_task(
                self.description, total=self.total, rate="-", errors=0, note=""
            )
        elif self.style == "plain":
            print(f"{self.description}: {self.total:,} {self.unit}", file=sys.stderr, flush=True)
        return self

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int, errors: int = 0, note: str | None = None) -> None:
        """``n`` more units done (``errors`` of them failed); ``note`` replaces the shown note."""
        self.done += n
        self.errors += errors
        if note is not None:
            self.note = note
        if self._rich is not None:
            rate = f"{self.rate:,.0f}" if self.rate >= 10 else f"{self.rate:.2f}"
            self._rich.update(
                self._task, completed=self.done, rate=rate, errors=self.errors, note=self.note
            )
        elif self.style == "plain":
            now = time.perf_counter()
            if now - self._last_line >= self.every_s or self.done >= self.total:
                self._last_line = now
                self._plain()

    def _plain(self) -> None:
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"
        note = f", {self.note}" if self.note else ""
        print(
            f"{self.description}: {self.done:,}/{self.total:,} {self.unit}, {shown}/s, "
            f"ETA {eta:,.0f} s, errors {self.errors}{note}",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.__exit__(exc_type, exc, tb)
