"""What ``valuescope run`` prints while it runs: one line per event of the run loop
(:mod:`cluster.pipeline.events`), each cut to the terminal's width, and what to do after Ctrl-C.
"""

from __future__ import annotations

import shlex
import sys

import click

from cluster.cli.display import console
from cluster.pipeline.events import EnginesStarting, Event, RoundFitted
from cluster.reports.format import pct


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def round_line(event: RoundFitted, width: int) -> str:
    """``<model> round <r>: <pairs> pairs, held-out <acc>; top a, b; bottom y, z`` with as many
    outcomes at each end as fit in ``width`` columns."""
    acc = pct(event.holdout_accuracy, 0)
    head = f"{event.model} round {event.round}: {event.pairs:,} pairs, held-out {acc}"
    best = head
    for k in range(1, max(len(event.top), len(event.bottom)) + 1):
        text = f"{head}; top {', '.join(event.top[:k])}"
        if event.bottom:
            text += f"; bottom {', '.join(event.bottom[-k:])}"
        if len(text) > width and k > 1:
            break
        best = text
    return _fit(best, width)


def _short(path: str) -> str:
    """A path relative to the working folder when it lies below it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class LivePrinter:
    """The run's listener: prints each event as one line on standard error."""

    def __init__(self) -> None:
        self.log_shown = False

    def __call__(self, event: Event) -> None:
        width = console().width
        if isinstance(event, EnginesStarting):
            noun = "replica" if event.replicas == 1 else "replicas"
            line = f"{event.model}: starting {event.replicas} {noun}"
            if event.log_path and not self.log_shown:
                log = f"engine logs: {_short(event.log_path)}"
                line += f"; {log}" if len(line) + len(log) + 2 <= width else f"\n{log}"
                self.log_shown = True
            click.echo(line, err=True)
        elif isinstance(event, RoundFitted):
            click.echo(round_line(event, width), err=True)


def interrupted(run_id: str, root: str, model: str, fitted: bool) -> None:
    """After Ctrl-C: what is stored, how to look at it, how to resume."""
    again = shlex.join(["valuescope", *sys.argv[1:]])
    if fitted:
        click.echo(
            f"interrupted while asking {model}; what was asked so far is fitted: "
            f"valuescope show {run_id} --root {root}",
            err=True,
        )
    else:
        click.echo(f"interrupted while asking {model}; nothing to fit yet", err=True)
    click.echo(f"resume (nothing asked is asked again): {again}", err=True)
