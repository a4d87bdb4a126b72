"""Turning model output into preference measurements.

- ``letter_probs``: next-token log-probabilities → P(A), P(B) renormalised over the two letters,
  the raw log-probabilities and the mass the letters got.
- ``parse_letter`` / ``parse_reasoning``: one completion → "A", "B" or None.
- ``counts_to_p``: sample counts → P(A) under an explicit unparseable policy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

LETTERS = ("A", "B")
_STANDALONE = {
    letter: re.compile(rf"(?<![A-Za-z0-9]){letter}(?![A-Za-z0-9])") for letter in LETTERS
}
_ANSWER = re.compile(r"Answer\s*:\s*\**\s*\(?([AB])\)?(?![A-Za-z0-9])")


def letter_variants(letter: str) -> tuple[str, ...]:
    """Token strings that spell a letter answer: bare, with a leading space, and the
    SentencePiece / byte-level space markers."""
    return (letter, f" {letter}", f"\u2581{letter}", f"\u0120{letter}")


def letter_probs(logprobs: Mapping[str, float]) -> tuple[float, float, float, float, float]:
    """Letter probabilities from one next-token distribution (top-k log-probabilities).

    Args:
        logprobs: token string → natural-log probability (top-k is enough).

    Returns:
        (p_a, p_b, lp_a, lp_b, mass): P(A), P(B) renormalised over the two letters; the log of
        the summed probability of each letter's spellings (``-inf`` when absent from top-k);
        mass = probability on the two letters before renormalising. p_a and p_b are NaN when
        neither letter appears.
    """
    pa = sum(math.exp(logprobs[t]) for t in letter_variants("A") if t in logprobs)
    pb = sum(math.exp(logprobs[t]) for t in letter_variants("B") if t in logprobs)
    mass = pa + pb
    lp_a = math.log(pa) if pa > 0 else -math.inf
    lp_b = math.log(pb) if pb > 0 else -math.inf
    if mass <= 0:
        return math.nan, math.nan, lp_a, lp_b, 0.0
    return pa / mass, pb / mass, lp_a, lp_b, mass


def parse_letter(text: str) -> str | None:
    """The letter a short completion chose, or None when unparseable.

    Exactly "A"/"B" (after stripping whitespace and trailing punctuation) counts; else, when
    exactly one of the two letters stands alone (not inside a word), that letter; else None.
    """
    stripped = text.strip().rstrip(".!)").lstrip("(").strip()
    if stripped in LETTERS:
        return stripped
    found = [letter for letter in LETTERS if _STANDALONE[letter].search(text)]
    return found[0] if len(found) == 1 else None


def parse_reasoning(text: str) -> str | None:
    """The letter in the first "Answer: X" of a reasoning completion, or None."""
    match = _ANSWER.search(text)
    return match.group(1) if match else None


def count_letters(choices: Iterable[str | None]) -> tuple[int, int, int]:
    """(n_a, n_b, n_unparsed) of parsed completions."""
    n_a = n_b = n_u = 0
    for choice in choices:
        if choice == "A":
            n_a += 1
        elif choice == "B":
            n_b += 1
        else:
            n_u += 1
    return n_a, n_b, n_u


def counts_to_p(
    n_a: np.ndarray,
    n_b: np.ndarray,
    n_unparsed: np.ndarray,
    policy: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """P(A) from sample counts, vectorised over prompts.

    ``skip`` ignores unparseable completions (NaN when nothing parsed); ``random`` gives each
    unparseable completion to A or B with a fair coin; ``distribution`` counts each as half A,
    half B (so a prompt that never parsed reads as 0.5 — why it is not the default).
    """
    n_a = np.asarray(n_a, dtype=np.float64)
    n_b = np.asarray(n_b, dtype=np.float64)
    n_u = np.asarray(n_unparsed, dtype=np.float64)
    if policy == "skip":
        extra_a = np.zeros_like(n_a)
        extra_b = np.zeros_like(n_b)
    elif policy == "distribution":
        extra_a = extra_b = n_u / 2
    elif policy == "random":
        rng = rng or np.random.default_rng(0)
        extra_a = rng.binomial(n_u.astype(np.int64), 0.5).astype(np.float64)
        extra_b = n_u - extra_a
    else:
        raise ValueError(f"unparseable policy {policy!r}; use skip, random or distribution")
    total = n_a + n_b + extra_a + extra_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (n_a + extra_a) / np.where(total > 0, total, 1), np.nan)
