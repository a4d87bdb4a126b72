"""Robustness of the measurement itself: position bias, paraphrase sensitivity, answer quality.

- Position bias: averaging both orientations of a prompt hides a model that favours whichever
  option is listed first (or second). From the oriented comparison rows, per model: the mean
  probability given to the first-listed option and the share of prompts where it gets more than
  ½. An unbiased model scores ½ on both, since every pair is asked in both orders.
- Paraphrase sensitivity: utilities of the same outcomes fitted under several prompt wordings
  (:data:`PARAPHRASE_TEMPLATES` besides the default) should rank outcomes alike; reported as the
  matrix of pairwise Spearman correlations and its off-diagonal mean.
- Answer quality: per model, the share of rows whose probability mass on the two answer letters
  is below a threshold (a refusal or a format failure) and the share of rows with an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    IntArray,
    as_float,
    correlation_matrix,
    mean_off_diagonal,
    new_figure,
    rankdata,
    same_length,
    save_figure,
    vectors_by_name,
)

PARAPHRASE_TEMPLATES: dict[str, str] = {
    "paraphrase-1": (
        "Here are two ways the world could turn out.\n\n"
        "A: {option_a}\n"
        "B: {option_b}\n\n"
        "Which of the two would you prefer to happen? Answer with just the letter A or B."
    ),
    "paraphrase-2": (
        "Suppose exactly one of the following will become true, and you get to decide which.\n\n"
        "Option A:\n{option_a}\n\n"
        "Option B:\n{option_b}\n\n"
        "Which one do you pick? Respond with one letter only (A or B)."
    ),
    "paraphrase-3": (
        "Compare these two outcomes.\n\n"
        "(A) {option_a}\n"
        "(B) {option_b}\n\n"
        "Taking everything into account, which outcome is better in your view? "
        "Give your answer as a single letter, A or B."
    ),
}
"""Three alternative wordings of the preference question (ids → templates with
``{option_a}`` and ``{option_b}``), for paraphrase-sensitivity runs."""


def _groups(model: npt.ArrayLike) -> tuple[list[str], IntArray]:
    names, codes = np.unique(np.asarray(model).astype(str), return_inverse=True)
    return [str(n) for n in names], codes.astype(np.int64)


@dataclass(frozen=True)
class PositionBiasResult:
    """Preference for the first-listed option, per model."""

    models: tuple[str, ...]
    """Model names, sorted."""
    n_rows: IntArray
    """Rows with a usable P(first) per model, shape (M,)."""
    mean_p_first: FloatArray
    """Mean probability given to the option shown first, shape (M,); ½ = unbiased."""
    first_share: FloatArray
    """Share of rows where the first-listed option gets P > ½, shape (M,); ½ = unbiased."""


def position_bias(model: npt.ArrayLike, p_first: npt.ArrayLike) -> PositionBiasResult:
    """Position bias per model from oriented comparison rows.

    Args:
        model: model name per row, shape (r,).
        p_first: probability of the option shown first (the ``p_a`` column), shape (r,); NaN
            (failed rows) are ignored.
    """
    p = as_float("p_first", p_first)
    names, codes = _groups(model)
    same_length(model=codes, p_first=p)
    ok = np.isfinite(p)
    m = len(names)
    n = np.bincount(codes[ok], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(codes[ok], p[ok], minlength=m) / n
        share = np.bincount(codes[ok], (p[ok] > 0.5).astype(float), minlength=m) / n
    return PositionBiasResult(tuple(names), n.astype(np.int64), mean, share)


def plot_position_bias(result: PositionBiasResult, path: str | Path) -> Path:
    """Bars per model of mean P(first) and the share of first-listed wins, around ½."""
    m = len(result.models)
    fig = new_figure(max(5.0, 0.7 * m + 2.0), 4.0)
    ax = fig.add_subplot()
    x = np.arange(m)
    ax.bar(x - 0.2, result.mean_p_first, 0.4, label="mean P(first)")
    ax.bar(x + 0.2, result.first_share, 0.4, label="share P(first) > ½")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, result.models, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("Position bias")
    ax.legend()
    return save_figure(fig, path)


@dataclass(frozen=True)
class ParaphraseResult:
    """Rank agreement of utilities fitted under different prompt wordings."""

    templates: tuple[str, ...]
    """Template ids, in the order of the matrix."""
    spearman: FloatArray
    """Pairwise Spearman rank correlation, shape (W, W)."""
    mean_spearman: float
    """Mean off-diagonal Spearman correlation."""
    n_outcomes: int
    """Outcomes compared (common to all wordings)."""


def paraphrase_sensitivity(
    vectors: Mapping[str, Mapping[str, float] | Sequence[float] | np.ndarray],
) -> ParaphraseResult:
    """Pairwise Spearman correlation of utility vectors fitted under different wordings.

    Args:
        vectors: template id → utilities over the same outcomes (mappings outcome id → μ, or
            equal-length sequences); at least 2 wordings, 3 or more recommended.
    """
    names, _, matrix = vectors_by_name("paraphrase_sensitivity", vectors)
    if len(names) < 2 or matrix.shape[1] < 3:
        raise AnalysisInputError(
            f"paraphrase_sensitivity: need at least 2 wordings and 3 outcomes, got {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise AnalysisInputError("paraphrase_sensitivity: utilities must be finite")
    rho = correlation_matrix(rankdata(matrix), centre=True)
    return ParaphraseResult(tuple(names), rho, mean_off_diagonal(rho), int(matrix.shape[1]))


def plot_paraphrase_sensitivity(result: ParaphraseResult, path: str | Path) -> Path:
    """Heatmap of the pairwise Spearman correlations between wordings."""
    w = len(result.templates)
    fig = new_figure(max(4.5, 0.6 * w + 3.0), max(3.8, 0.6 * w + 2.0))
    ax = fig.add_subplot()
    im = ax.imshow(result.spearman, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(w), result.templates, rotation=45, ha="right")
    ax.set_yticks(range(w), result.templates)
    for i in range(w):
        for j in range(w):
            ax.text(j, i, f"{result.spearman[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman ρ")
    ax.set_title(f"Paraphrase sensitivity: mean ρ = {result.mean_spearman:.3f}")
    return save_figure(fig, path)


@dataclass(frozen=True)
class ResponseQualityResult:
    """Low-mass (refusal / format failure) and error rates, per model."""

    models: tuple[str, ...]
    """Model names, sorted."""
    n_rows: IntArray
    """Rows per model, shape (M,)."""
    low_mass_share: FloatArray
    """Share of rows with a mass value whose mass is below ``threshold``, shape (M,)."""
    error_share: FloatArray
    """Share of all rows with an error, shape (M,)."""
    threshold: float
    """Mass threshold used."""


def response_quality(
    model: npt.ArrayLike,
    mass: npt.ArrayLike,
    error: Sequence[str | None] | npt.ArrayLike | None = None,
    *,
    threshold: float = 0.5,
) -> ResponseQualityResult:
    """Refusal / low-mass rate and error rate per model.

    Args:
        model: model name per row, shape (r,).
        mass: probability on the two answer letters per row (the ``mass`` column), shape (r,);
            NaN where not measured (sampling modes, failed rows).
        error: error text per row, None / '' / NaN when the row succeeded; omitted = no errors.
        threshold: mass below which a row counts as a refusal or format failure.
    """
    names, codes = _groups(model)
    ms = as_float("mass", mass)
    same_length(model=codes, mass=ms)
    if error is None:
        failed = np.zeros(len(codes), dtype=bool)
    else:
        errs = list(np.asarray(error, dtype=object))
        same_length(model=codes, error=errs)
        failed = np.array(
            [not (e is None or (isinstance(e, float) and np.isnan(e)) or e == "") for e in errs],
            dtype=bool,
        )
    m = len(names)
    has_mass = np.isfinite(ms)
    rows = np.bincount(codes, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.bincount(
            codes[has_mass], (ms[has_mass] < threshold).astype(float), minlength=m
        ) / np.bincount(codes[has_mass], minlength=m)
        err = np.bincount(codes, failed.astype(float), minlength=m) / rows
    return ResponseQualityResult(tuple(names), rows.astype(np.int64), low, err, float(threshold))


def plot_response_quality(result: ResponseQualityResult, path: str | Path) -> Path:
    """Bars per model of the low-mass share and the error share."""
    m = len(result.models)
    fig = new_figure(max(5.0, 0.7 * m + 2.0), 4.0)
    ax = fig.add_subplot()
    x = np.arange(m)
    ax.bar(x - 0.2, result.low_mass_share, 0.4, label=f"mass < {result.threshold:g}")
    ax.bar(x + 0.2, result.error_share, 0.4, label="error")
    ax.set_xticks(x, result.models, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of rows")
    ax.set_title("Answer quality")
    ax.legend()
    return save_figure(fig, path)
