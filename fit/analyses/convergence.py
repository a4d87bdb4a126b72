"""Convergence across models, and every metric against model capability.

:func:`convergence` compares the utility vectors of several models over the same outcomes:
cosine similarity of the vectors as given, and Pearson correlation (the cosine of the vectors
after centring each one). Utilities normalised to mean 0 make the two coincide.

:func:`scaling` takes a table with one row per model — any metrics from the other analyses
plus a capability or size column (e.g. a benchmark score from a user CSV) — and correlates every
numeric metric column with the capability column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    correlation_matrix,
    mean_off_diagonal,
    new_figure,
    pearson,
    save_figure,
    spearman,
    vectors_by_name,
)


@dataclass(frozen=True)
class ConvergenceResult:
    """Pairwise similarity of models' utility vectors."""

    models: tuple[str, ...]
    """Model names, in the order of the matrices."""
    cosine: FloatArray
    """Cosine similarity of the vectors as given, shape (M, M)."""
    pearson: FloatArray
    """Pearson correlation (cosine of the centred vectors), shape (M, M)."""
    mean_cosine: float
    """Mean off-diagonal cosine similarity."""
    mean_pearson: float
    """Mean off-diagonal Pearson correlation."""
    n_outcomes: int
    """Outcomes compared (those common to all models)."""


def convergence(
    vectors: Mapping[str, Mapping[str, float] | Sequence[float] | np.ndarray],
) -> ConvergenceResult:
    """Pairwise cosine and Pearson similarity of utility vectors.

    Args:
        vectors: model → utilities, either mappings outcome id → μ (outcomes common to all models
            are used) or equal-length sequences over the same outcomes.
    """
    names, _, matrix = vectors_by_name("convergence", vectors)
    if len(names) < 2 or matrix.shape[1] < 2:
        raise AnalysisInputError(
            f"convergence: need at least 2 models and 2 outcomes, got {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise AnalysisInputError("convergence: utilities must be finite")
    cos = correlation_matrix(matrix, centre=False)
    cor = correlation_matrix(matrix, centre=True)
    return ConvergenceResult(
        models=tuple(names),
        cosine=cos,
        pearson=cor,
        mean_cosine=mean_off_diagonal(cos),
        mean_pearson=mean_off_diagonal(cor),
        n_outcomes=int(matrix.shape[1]),
    )


def plot_convergence(result: ConvergenceResult, path: str | Path) -> Path:
    """Heatmap of the Pearson similarity matrix, values written in the cells when few."""
    m = len(result.models)
    fig = new_figure(max(5.0, 0.5 * m + 3.0), max(4.0, 0.5 * m + 2.0))
    ax = fig.add_subplot()
    im = ax.imshow(result.pearson, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(m), result.models, rotation=45, ha="right")
    ax.set_yticks(range(m), result.models)
    if m <= 15:
        for i in range(m):
            for j in range(m):
                ax.text(j, i, f"{result.pearson[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title(f"Convergence: mean r = {result.mean_pearson:.3f}")
    return save_figure(fig, path)


@dataclass(frozen=True)
class ScalingRow:
    """One metric against capability."""

    metric: str
    """Metric column name."""
    n: int
    """Models with both values finite."""
    pearson: float
    """Pearson r with capability (NaN below 3 models)."""
    spearman: float
    """Spearman ρ with capability."""


@dataclass(frozen=True)
class ScalingResult:
    """Correlation of every metric with capability across models."""

    capability_column: str
    """Name of the capability column."""
    capability: FloatArray
    """Capability value per model (row), shape (R,)."""
    metrics: Mapping[str, FloatArray]
    """Metric column → values per row, shape (R,) each (NaN where missing)."""
    rows: tuple[ScalingRow, ...]
    """Correlations, in the column order of the table."""


def _to_float(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip()
    if text == "":
        return math.nan
    return float(text)


def _read_csv(path: Path) -> dict[str, list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnalysisInputError(f"scaling: cannot read CSV {str(path)!r}: {exc}") from None
    return {col: [r.get(col) or "" for r in rows] for col in header}


def scaling(
    metrics_table: Mapping[str, Sequence[object]] | str | Path, capability_column: str
) -> ScalingResult:
    """Correlate every numeric metric column with the capability column.

    Args:
        metrics_table: columns (name → one value per model) or the path of a CSV file with a
            header row. Columns that are not numeric (such as model names) are skipped; empty
            cells are missing values.
        capability_column: the column holding capability or size (e.g. a benchmark score or
            log parameter count).
    """
    table = (
        _read_csv(Path(metrics_table))
        if isinstance(metrics_table, (str, Path))
        else dict(metrics_table)
    )
    if capability_column not in table:
        raise AnalysisInputError(
            f"scaling: no column {capability_column!r}; columns are {list(table)}"
        )
    columns: dict[str, FloatArray] = {}
    for name, raw in table.items():
        try:
            columns[name] = np.array([_to_float(v) for v in raw], dtype=np.float64)
        except (TypeError, ValueError):
            if name == capability_column:
                raise AnalysisInputError(
                    f"scaling: capability column {capability_column!r} is not numeric"
                ) from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise AnalysisInputError(f"scaling: columns have different lengths {sorted(lengths)}")
    cap = columns.pop(capability_column)
    rows = []
    for name, values in columns.items():
        ok = np.isfinite(cap) & np.isfinite(values)
        rows.append(
            ScalingRow(
                name, int(ok.sum()), pearson(cap[ok], values[ok]), spearman(cap[ok], values[ok])
            )
        )
    return ScalingResult(capability_column, cap, columns, tuple(rows))


def plot_scaling(result: ScalingResult, path: str | Path) -> Path:
    """A grid of small scatter plots, one per metric, against capability."""
    k = max(1, len(result.rows))
    ncols = min(4, k)
    nrows = math.ceil(k / ncols)
    fig = new_figure(3.0 * ncols, 2.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, row in zip(axes.ravel(), result.rows, strict=False):
        ax.scatter(result.capability, result.metrics[row.metric], s=16, color="#4c72b0")
        ax.set_title(f"{row.metric}\nr = {row.pearson:.2f}, ρ = {row.spearman:.2f}", fontsize=8)
        ax.set_xlabel(result.capability_column, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(result.rows) :]:
        ax.set_axis_off()
    return save_figure(fig, path)
