"""The figures every report opens with, drawn in memory as PNG bytes.

- :func:`utilities_figure`: per model, the ranked utilities μ with their 95 % intervals (top and
  bottom of the ranking when there are many outcomes), and the true utilities of a simulated
  agent where the run has them.
- :func:`answers_figure`: per model, how it answered: the share of prompts the first-listed
  option won, mean P(first), mean letter mass, and the shares of errors and refusals. A model
  without position bias wins half its prompts with the first option; bars far from ½ or from
  full mass say the utilities rest on answers to read with care.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

_SHOWN = 15
"""Outcomes shown at each end of a long ranking."""


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width, height))


def _label(text: str | None, oid: str, width: int = 38) -> str:
    text = (text or oid).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def utilities_figure(models: dict[str, dict[str, Any]]) -> bytes:
    """Ranked μ with intervals, one panel per model (``models``: as ``summary.load`` returns)."""
    names = list(models)
    rows = [models[m]["utilities"] for m in names]
    heights = [min(len(r), 2 * _SHOWN + 1) for r in rows]
    fig = _figure(7.5 * len(names), 0.8 + 0.22 * max(heights + [4]))
    for k, (name, utilities) in enumerate(zip(names, rows, strict=True)):
        ax = fig.add_subplot(1, len(names), k + 1)
        shown = [u for u in utilities if u.get("mu") is not None]
        gap = len(shown) > 2 * _SHOWN
        if gap:
            shown = shown[:_SHOWN] + shown[-_SHOWN:]
        y = np.arange(len(shown))[::-1].astype(float)
        if gap:
            y[_SHOWN:] -= 1.0  # leave a row for the elision mark
        mu = np.array([u["mu"] for u in shown], dtype=float)
        lo = np.array([np.nan if u.get("mu_lo") is None else u["mu_lo"] for u in shown])
        hi = np.array([np.nan if u.get("mu_hi") is None else u["mu_hi"] for u in shown])
        has = np.isfinite(lo) & np.isfinite(hi)
        err = np.vstack([np.where(has, mu - lo, 0.0), np.where(has, hi - mu, 0.0)])
        ax.errorbar(mu, y, xerr=err, fmt="o", ms=3.5, color="#2b6cb0", ecolor="#90b4dd", lw=1.2)
        truth = [u.get("true_utility") for u in shown]
        if any(t is not None for t in truth):
            t = np.array([np.nan if v is None else v for v in truth], dtype=float)
            ax.plot(t, y, "x", color="#c05621", ms=4, label="true (z)")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels([_label(u.get("text"), u["outcome_id"]) for u in shown], fontsize=7)
        if gap:
            ax.axhline(y[_SHOWN - 1] - 1.0, color="#bbb", lw=0.8, ls=":")
        ax.axvline(0, color="#ddd", lw=0.8)
        ax.set_xlabel("utility μ (standardised), 95 % interval")
        more = f", top and bottom {_SHOWN} of {len(utilities)}" if gap else ""
        ax.set_title(f"{name}{more}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


_ANSWER_BARS = (
    ("first_wins", "first-listed wins"),
    ("mean_p_first", "mean P(first)"),
    ("mass", "letter mass"),
    ("refusal_rate", "refused"),
    ("error_rate", "errors"),
)


def answers_figure(answers: dict[str, dict[str, Any]]) -> bytes:
    """How each model answered (``answers``: model → ``RunStore.answer_stats`` row)."""
    names = list(answers)
    fig = _figure(max(5.0, 1.6 + 1.5 * len(names)), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(_ANSWER_BARS)
    x = np.arange(len(names), dtype=float)
    for k, (key, label) in enumerate(_ANSWER_BARS):
        values = [answers[m].get(key) for m in names]
        heights = [0.0 if v is None else float(v) for v in values]
        bars = ax.bar(x + (k - 2) * width, heights, width, label=label)
        for bar, value in zip(bars, values, strict=True):
            if value is None:
                bar.set_hatch("//")  # not measured in this mode
    ax.axhline(0.5, color="#999", lw=0.8, ls="--")
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("position bias and answer quality (dashed: no position preference)", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    return _png(fig)
