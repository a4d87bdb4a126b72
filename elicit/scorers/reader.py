"""How the simulated agent reads a rendered prompt.

The agent is handed the text a model would get and must find out from that text what it is
being asked: which outcome stands under the letter A and which under B, which personas the
system message speaks in, whether a framing phrase is present, and what the wording around the
options is. Nothing here looks at the query's orientation; a renderer that shows both
orientations in one order, labels the options with swapped letters, or drops the system message
therefore changes the agent's answers, as it would change a real model's.

Reading the options: the agent knows which two outcomes a query is about (their texts, as a
real model's scorer does) but not their order. Each option text is located in the prompt (the
longer first, so an option that is a substring of the other is not found inside it), and its
letter is the last free-standing ``A`` or ``B`` in the few characters before it (``Option A:``,
``A:``, ``(A)``), looking no further back than the end of the earlier option. An option with no
letter before it takes the letter the other option did not; with no letters at all, the option
shown first is A. Two options under one letter, or an option missing from the prompt, make the
prompt unreadable (an error row, as a real scorer writes for a prompt it cannot run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

#: A letter standing alone (not inside a word or number).
_LETTER = re.compile(r"(?<![A-Za-z0-9])([AB])(?![A-Za-z0-9])")
#: How far before an option its letter label may stand (characters).
LABEL_WINDOW = 40
#: The first number in an outcome text ("1,000 people …", "$5,000 …"): its quantity.
_QUANTITY = re.compile(r"(?<![\w.])\$?(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_SINGULAR = re.compile(r"\s*(?:a|an|one)\s", re.IGNORECASE)
#: Prefix of a literal persona phrase in `persona_offsets`.
TEXT_PREFIX = "text:"


@dataclass(frozen=True)
class OptionReading:
    """Which of the two candidate texts the prompt shows under each letter."""

    swapped: bool
    """False: the first candidate stands under A; True: the second one does."""
    error: str | None = None
    """Why the prompt could not be read (then ``swapped`` is meaningless)."""


def _find_outside(text: str, needle: str, span: tuple[int, int]) -> int:
    """First occurrence of ``needle`` not inside ``span``, or -1."""
    start = 0
    while True:
        pos = text.find(needle, start)
        if pos < 0:
            return -1
        if not (span[0] <= pos and pos + len(needle) <= span[1]):
            return pos
        start = pos + 1


def _label(text: str, start: int, end: int) -> str | None:
    """The last free-standing letter in ``text[start:end]``."""
    found = _LETTER.findall(text, start, end)
    return found[-1] if found else None


def read_options(text: str, first: str, second: str) -> OptionReading:
    """Read which of two option texts the prompt shows under the letter A.

    Args:
        text: the rendered prompt.
        first, second: the two outcome texts the agent looks for.
    """
    if first == second:
        return OptionReading(False)
    long_, short = (first, second) if len(first) >= len(second) else (second, first)
    pos_long = text.find(long_)
    pos_short = (
        _find_outside(text, short, (pos_long, pos_long + len(long_))) if pos_long >= 0 else -1
    )
    if pos_long < 0 or pos_short < 0:
        missing = long_ if pos_long < 0 else short
        return OptionReading(False, f"prompt does not show the option {missing[:60]!r}")
    pos_first, pos_second = (pos_long, pos_short) if long_ is first else (pos_short, pos_long)
    early, late = sorted((pos_first, pos_second))
    early_len = len(first) if early == pos_first else len(second)
    label_early = _label(text, max(0, early - LABEL_WINDOW), early)
    label_late = _label(text, max(early + early_len, late - LABEL_WINDOW), late)
    if label_early is None and label_late is None:
        label_early, label_late = "A", "B"
    elif label_early is None:
        label_early = "B" if label_late == "A" else "A"
    elif label_late is None:
        label_late = "B" if label_early == "A" else "A"
    if label_early == label_late:
        return OptionReading(False, f"both options are labelled {label_early} in the prompt")
    first_letter = label_early if pos_first == early else label_late
    return OptionReading(first_letter == "B")


def wording(text: str, options: tuple[str, str], phrases: tuple[str, ...]) -> str:
    """The prompt's wording: its text with the two options and the given phrases removed."""
    for part in (*options, *phrases):
        if part:
            text = text.replace(part, "\x00")
    return text


def quantity(text: str) -> float | None:
    """The first number an outcome text states (commas and a leading $ allowed), or None.

    A text that opens with "A", "An" or "One" and states no number ("A chicken is spared…")
    counts as 1: it is the first rung of a ladder of N.
    """
    match = _QUANTITY.search(text)
    if match:
        return float(match.group(1).replace(",", ""))
    return 1.0 if _SINGULAR.match(text) else None


@cache
def _packaged_personas() -> dict[str, str]:
    from elicit.generators.political import political_personas

    return {p.id: p.instruction() for p in political_personas()}


def persona_phrase(key: str) -> str:
    """The text that shows a persona is in the prompt.

    Args:
        key: a packaged persona id (its instruction text is looked for) or ``text:<phrase>``.

    Raises:
        ValueError: an unknown persona id or an empty phrase (one line, naming the key).
    """
    if key.startswith(TEXT_PREFIX):
        phrase = key[len(TEXT_PREFIX) :]
        if not phrase.strip():
            raise ValueError(f"persona {key!r}: the phrase after {TEXT_PREFIX!r} is empty")
        return phrase
    known = _packaged_personas()
    if key not in known:
        raise ValueError(
            f"unknown persona {key!r}; use a packaged persona id ({', '.join(known)}) or "
            f"'{TEXT_PREFIX}<phrase found in the prompt>'"
        )
    return known[key]
