"""Completeness: how decisive a model's preferences are over the pairs it was asked.

A complete preference relation ranks every pair; a model that answers ½ to many pairs has
incomplete (or indifferent) preferences there. Decisiveness of a pair is ``|2P − 1|`` (0 at
indifference, 1 for a certain choice); the near-indifferent share counts pairs with
``|P − ½| < band``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    as_float,
    new_figure,
    same_length,
    save_figure,
)


@dataclass(frozen=True)
class CompletenessResult:
    """Decisiveness over measured pairs."""

    p: FloatArray
    """P(i ≻ j) of the pairs used (NaN removed), shape (m,)."""
    decisiveness: float
    """Mean of ``|2P − 1|`` (weighted when weights were given), in [0, 1]."""
    near_indifferent_share: float
    """Share (weighted) of pairs with ``|P − ½| < indifference_band``, in [0, 1]."""
    indifference_band: float
    """Half-width of the band around ½ counted as near-indifferent."""
    n_missing: int
    """Pairs dropped because their probability is NaN (not measured, or every answer failed)."""

    @property
    def n_pairs(self) -> int:
        """Number of pairs used."""
        return len(self.p)


def completeness(
    p: npt.ArrayLike,
    *,
    indifference_band: float = 0.1,
    weights: npt.ArrayLike | None = None,
) -> CompletenessResult:
    """Decisiveness of a model over its measured pairs.

    Args:
        p: P(i ≻ j) per measured unordered pair (either orientation; ``|2P − 1|`` is symmetric),
            shape (m,); NaN marks a pair without a usable answer.
        indifference_band: half-width of the near-indifference band around ½, in (0, ½].
        weights: optional non-negative weight per pair (e.g. the number of answers), shape (m,).
    """
    pp = as_float("p", p)
    if not 0.0 < indifference_band <= 0.5:
        raise AnalysisInputError(
            f"completeness: indifference_band must lie in (0, 0.5], got {indifference_band}"
        )
    w = np.ones_like(pp) if weights is None else as_float("weights", weights)
    same_length(p=pp, weights=w)
    ok = np.isfinite(pp)
    pp, w = pp[ok], w[ok]
    if not len(pp):
        raise AnalysisInputError("completeness: no pair has a measured probability")
    if np.any((pp < 0) | (pp > 1)):
        raise AnalysisInputError("completeness: probabilities must lie in [0, 1]")
    if np.any(w < 0) or w.sum() <= 0:
        raise AnalysisInputError("completeness: weights must be >= 0 with a positive total")
    return CompletenessResult(
        p=pp,
        decisiveness=float(np.average(np.abs(2.0 * pp - 1.0), weights=w)),
        near_indifferent_share=float(np.average(np.abs(pp - 0.5) < indifference_band, weights=w)),
        indifference_band=float(indifference_band),
        n_missing=int((~ok).sum()),
    )


def plot_completeness(result: CompletenessResult, path: str | Path) -> Path:
    """Histogram of pairwise probabilities with the near-indifference band shaded."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.hist(result.p, bins=np.linspace(0.0, 1.0, 41).tolist(), color="#4c72b0")
    band = result.indifference_band
    ax.axvspan(0.5 - band, 0.5 + band, color="#c44e52", alpha=0.15, label="near-indifferent")
    ax.set_xlabel("P(i ≻ j)")
    ax.set_ylabel("pairs")
    ax.set_title(
        f"Completeness: decisiveness {result.decisiveness:.3f}, near-indifferent "
        f"{100 * result.near_indifferent_share:.1f}% (n = {result.n_pairs})"
    )
    ax.legend()
    return save_figure(fig, path)
