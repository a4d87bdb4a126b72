"""What a run reports while it runs: data handed to a listener (the CLI prints it).

The run loop never prints; it calls ``listener(event)`` with one of these. ``valuescope run``
turns them into one line each; a notebook or a job can collect them instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EnginesStarting:
    """A model's replicas are about to load (the slow part before the first answer)."""

    model: str
    replicas: int
    log_path: str | None
    """Where the engines' own output goes; None when it is shown (``--verbose``)."""


@dataclass(frozen=True)
class RoundFitted:
    """An active-learning round is stored and the utilities so far are fitted."""

    model: str
    round: int
    pairs: int
    """Training pairs asked so far (all rounds up to this one)."""
    holdout_accuracy: float | None
    """Share of held-out pairs the utilities so far predict; None without held-out pairs."""
    top: list[str]
    """Outcome ids, best first."""
    bottom: list[str]
    """Outcome ids, worst last."""


Event = EnginesStarting | RoundFitted
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The listener of a run nobody watches."""
