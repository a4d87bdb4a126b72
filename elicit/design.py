"""Pair designs: which unordered pairs are asked, and their oriented prompts.

Outcomes are indexed 0…N−1 in the order of the outcome set. An unordered pair (i, j) with
i < j has the stable id ``i·N + j``; its orientation 0 shows i as option A, orientation 1 shows
j first. Everything here is vectorised over pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elicit.errors import ElicitError


@dataclass(frozen=True)
class OrientedPrompts:
    """Oriented prompts of a round, shape (n,) each: outcome ``a_idx`` is shown first."""

    pair_id: np.ndarray
    a_idx: np.ndarray
    b_idx: np.ndarray
    orientation: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_id)


def pair_ids(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Stable ids of unordered pairs (order of i and j does not matter)."""
    lo = np.minimum(i, j).astype(np.int64)
    hi = np.maximum(i, j).astype(np.int64)
    return lo * n + hi


def split_pair_ids(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pair_ids`: (i, j) with i < j."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids // n, ids % n


def full_graph(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All N·(N−1)/2 unordered pairs, i < j."""
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def orient(i: np.ndarray, j: np.ndarray, n: int, *, both_orders: bool = True) -> OrientedPrompts:
    """Oriented prompts for unordered pairs, sorted so prompts that share option A (and so a
    long common prefix) sit together, which helps the engine's prefix cache."""
    lo = np.minimum(i, j).astype(np.int64)
    hi = np.maximum(i, j).astype(np.int64)
    ids = lo * n + hi
    if both_orders:
        a = np.concatenate([lo, hi])
        b = np.concatenate([hi, lo])
        ids = np.concatenate([ids, ids])
        orientation = np.concatenate([np.zeros(len(lo), np.int8), np.ones(len(lo), np.int8)])
    else:
        a, b, orientation = lo, hi, np.zeros(len(lo), np.int8)
    order = np.lexsort((b, a))
    return OrientedPrompts(ids[order], a[order], b[order], orientation[order])


def index_pairs(
    a: Sequence[str], b: Sequence[str], index: dict[str, int], where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of outcome-id pairs → unordered index pairs, the first row of each pair kept.

    The one place where a table of pairs (a pairs file, a control target) becomes the ``i < j``
    pairs that prompts and fits use.

    Returns:
        ``(lo, hi, keep, swapped)``: index pairs with ``lo < hi``, the row numbers kept (first
        occurrence of each pair, in file order), and whether each kept row named the higher index
        first (so a per-row value oriented a-over-b must be flipped to mean lo-over-hi).

    Raises:
        ElicitError: an id that is not an outcome, or an outcome paired with itself (the message
            names ``where`` and the file row, counting the header as row 1).
    """
    unknown = sorted({x for x in [*a, *b] if x not in index})
    if unknown:
        raise ElicitError(
            f"{where}: unknown outcome id(s) {unknown[:5]}; ids must come from the run's "
            "outcome sets"
        )
    i = np.array([index[x] for x in a], dtype=np.int64)
    j = np.array([index[x] for x in b], dtype=np.int64)
    same = np.flatnonzero(i == j)
    if len(same):
        raise ElicitError(f"{where} row {same[0] + 2}: outcome {a[same[0]]!r} paired with itself")
    ids = pair_ids(i, j, len(index))
    _, keep = np.unique(ids, return_index=True)
    keep.sort()
    return np.minimum(i, j)[keep], np.maximum(i, j)[keep], keep, (i > j)[keep]


def load_pairs(path: str | Path, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs from a CSV or Parquet file with columns ``outcome_a``, ``outcome_b``."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    except FileNotFoundError:
        raise ElicitError(f"pairs file {str(path)!r} not found") from None
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ElicitError(f"pairs file {str(path)!r}: cannot read: {exc}") from None
    missing = [c for c in ("outcome_a", "outcome_b") if c not in table.column_names]
    if missing:
        raise ElicitError(f"pairs file {str(path)!r}: missing column(s) {missing}")
    a = [str(x) for x in table.column("outcome_a").to_pylist()]
    b = [str(x) for x in table.column("outcome_b").to_pylist()]
    lo, hi, _keep, _swapped = index_pairs(a, b, index, f"pairs file {str(path)!r}")
    return lo, hi
