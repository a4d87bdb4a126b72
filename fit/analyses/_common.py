"""Helpers shared by the analysis modules: input checks, rank statistics and figure output.

Kept free of scipy and matplotlib at import time so that ``import fit.analyses.x`` stays cheap;
figures use matplotlib's Agg canvas directly (no pyplot state, safe in worker threads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fit.errors import FitError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class AnalysisInputError(FitError, ValueError):
    """The inputs of an analysis are malformed: shapes differ, ids are missing, too few points."""


def as_float(name: str, value: Any, *, ndim: int = 1) -> FloatArray:
    """``value`` as a float64 array of ``ndim`` dimensions, or an :class:`AnalysisInputError`."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisInputError(f"{name}: expected numbers, got {value!r:.80} ({exc})") from None
    if arr.ndim != ndim:
        raise AnalysisInputError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def same_length(**arrays: Sequence[Any] | np.ndarray) -> int:
    """The common length of the arrays, or an error naming the ones that differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise AnalysisInputError(f"arrays must have the same length: {shown}")
    return next(iter(lengths.values()), 0)


def lookup(name: str, mapping: Mapping[str, float], ids: Sequence[str]) -> FloatArray:
    """Values of ``mapping`` at ``ids`` as an array; an error lists ids that are missing."""
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise AnalysisInputError(
            f"{name}: no value for {len(missing)} id(s), e.g. {missing[:3]}; give a value for "
            "every outcome the analysis uses"
        )
    return np.array([float(mapping[i]) for i in ids], dtype=np.float64)


def vectors_by_name(
    name: str, vectors: Mapping[str, Mapping[str, float] | Sequence[float] | np.ndarray]
) -> tuple[list[str], list[str] | None, FloatArray]:
    """Stack per-agent vectors into a matrix (agents × outcomes).

    Each value is either a mapping outcome id → utility (the outcomes common to all agents are
    used, in sorted order) or a sequence of equal length (used as given).

    Returns:
        (agent names, outcome ids or None for plain sequences, matrix of shape (A, K)).
    """
    names = list(vectors)
    if not names:
        raise AnalysisInputError(f"{name}: no vectors given")
    values = [vectors[n] for n in names]
    if all(isinstance(v, Mapping) for v in values):
        maps = [v for v in values if isinstance(v, Mapping)]
        common = set(maps[0])
        for m in maps[1:]:
            common &= set(m)
        ids = sorted(common)
        if not ids:
            raise AnalysisInputError(f"{name}: the vectors share no outcome ids")
        matrix = np.array([[float(m[i]) for i in ids] for m in maps], dtype=np.float64)
        return names, ids, matrix
    if any(isinstance(v, Mapping) for v in values):
        raise AnalysisInputError(
            f"{name}: mix of mappings and sequences; give all vectors in one form"
        )
    lengths = {len(v) for v in values}  # type: ignore[arg-type]
    if len(lengths) != 1:
        raise AnalysisInputError(
            f"{name}: vectors have different lengths {sorted(lengths)}; give utilities over the "
            "same outcomes, or mappings by outcome id"
        )
    return names, None, np.array([as_float(f"{name}[{n}]", vectors[n]) for n in names])


def zscore(x: npt.ArrayLike) -> FloatArray:
    """(x − mean) / sd over a 1-D array; all zeros when x is constant."""
    a = np.asarray(x, dtype=np.float64)
    sd = a.std()
    return (a - a.mean()) / sd if sd > 0 else np.zeros_like(a)


def rankdata(x: FloatArray) -> FloatArray:
    """Ranks 1…n along the last axis, ties sharing their average rank (like scipy's default)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, axis=-1, kind="mergesort")
    sorted_x = np.take_along_axis(x, order, axis=-1)
    n = x.shape[-1]
    # Average rank per run of equal values: first and last position of each run.
    new_run = np.ones(sorted_x.shape, dtype=bool)
    new_run[..., 1:] = sorted_x[..., 1:] != sorted_x[..., :-1]
    run_id = np.cumsum(new_run, axis=-1) - 1
    pos = np.broadcast_to(np.arange(n, dtype=np.float64), x.shape)
    flat_run = run_id + n * np.arange(int(np.prod(x.shape[:-1]))).reshape(x.shape[:-1] + (1,))
    flat_run = flat_run.ravel()
    total = np.bincount(flat_run, pos.ravel())
    count = np.bincount(flat_run)
    avg = (total / np.maximum(count, 1))[flat_run].reshape(x.shape) + 1.0
    ranks = np.empty_like(avg)
    np.put_along_axis(ranks, order, avg, axis=-1)
    return ranks


def pearson(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Pearson correlation of two 1-D arrays; NaN with fewer than 3 points or a constant input."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if len(a) < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN as for :func:`pearson`."""
    return pearson(rankdata(np.asarray(x, dtype=np.float64)), rankdata(np.asarray(y, np.float64)))


def correlation_matrix(matrix: FloatArray, *, centre: bool = True) -> FloatArray:
    """Row-by-row cosine similarity (Pearson correlation when ``centre``), shape (A, A).

    A row with zero norm gets NaN similarities (1 on its own diagonal entry).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if centre:
        m = m - m.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(m, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = m / norm[:, None]
    sim = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(sim, 1.0)
    return sim


def mean_off_diagonal(matrix: FloatArray) -> float:
    """Mean of the off-diagonal entries of a square matrix, ignoring NaN (NaN if none)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[0] < 2:
        return float("nan")
    off = m[~np.eye(m.shape[0], dtype=bool)]
    off = off[np.isfinite(off)]
    return float(off.mean()) if off.size else float("nan")


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A matplotlib figure on the Agg canvas, without touching pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders are created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120)
    return out
