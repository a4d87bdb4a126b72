"""Sufficient statistics of forced-choice data: what every estimator in ``fit`` consumes.

A comparison row says: outcome ``a`` was shown first, outcome ``b`` second, and the model put
probability ``p_a`` on ``a``. The likelihood of every model in this package depends on the rows
only through, per pair, the number of rows ``n`` and the mean soft label ``p`` (the binary
cross-entropy is linear in the label), so millions of rows collapse to one record per pair:

- :class:`OrientedStats` keeps the presentation order — one record per ordered
  (first-listed, second-listed) pair — which is what position-bias fits and order-consistency
  metrics need;
- :class:`PairStats` folds both orders onto the unordered pair ``i < j`` with
  ``p = P(i ≻ j)``, which is what the utility fits need.

Indices refer to positions in a list of outcome ids held by the caller (see :mod:`fit.data`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fit.errors import InvalidStatsError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def pair_keys(i: npt.ArrayLike, j: npt.ArrayLike, n_outcomes: int) -> IntArray:
    """One int64 key per pair, ``i * n_outcomes + j``, for set operations on pairs.

    Args:
        i: first indices, shape (m,).
        j: second indices, shape (m,).
        n_outcomes: number of outcomes N (keys are unique for indices in [0, N)).

    Returns:
        Keys, shape (m,). Order matters: canonicalise with ``i < j`` first for unordered pairs.
    """
    return np.asarray(i, dtype=np.int64) * np.int64(n_outcomes) + np.asarray(j, dtype=np.int64)


def _as(name: str, value: object, dtype: type) -> npt.NDArray:
    arr: npt.NDArray = np.ascontiguousarray(value, dtype=dtype)
    if arr.ndim != 1:
        raise InvalidStatsError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_common(
    kind: str, idx: dict[str, IntArray], n: FloatArray, p: FloatArray, pname: str, n_outcomes: int
) -> None:
    if int(n_outcomes) < 1:
        raise InvalidStatsError(f"{kind}: n_outcomes must be >= 1, got {n_outcomes}")
    m = len(n)
    for name, arr in (*idx.items(), (pname, p)):
        if len(arr) != m:
            raise InvalidStatsError(
                f"{kind}: {name} has {len(arr)} entries but n has {m}; all arrays must match"
            )
    for name, arr in idx.items():
        bad = np.flatnonzero((arr < 0) | (arr >= n_outcomes))
        if bad.size:
            raise InvalidStatsError(
                f"{kind}: {name}[{bad[0]}] = {arr[bad[0]]} is outside [0, {n_outcomes}); "
                f"{bad.size} index(es) out of range — is n_outcomes right?"
            )
    bad = np.flatnonzero(~np.isfinite(n) | (n < 0))
    if bad.size:
        raise InvalidStatsError(
            f"{kind}: n[{bad[0]}] = {n[bad[0]]}; observation counts must be finite and >= 0"
        )
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))  # also catches NaN
    if bad.size:
        raise InvalidStatsError(
            f"{kind}: {pname}[{bad[0]}] = {p[bad[0]]}; soft labels must lie in [0, 1]"
        )


@dataclass(frozen=True)
class PairStats:
    """Per unordered pair ``i < j``: how often it was observed and the mean P(i ≻ j).

    Pairs should be unique; a repeated pair acts as separate evidence, which is harmless.
    """

    i: IntArray
    """Index of the lower outcome of each pair, int64, shape (m,)."""
    j: IntArray
    """Index of the higher outcome, int64, shape (m,), with ``i < j`` elementwise."""
    n: FloatArray
    """Number of observations (rows) of each pair, float64 >= 0, shape (m,); the fit weight."""
    p: FloatArray
    """Mean soft label P(i ≻ j) over both presentation orders, float64 in [0, 1], shape (m,)."""
    n_outcomes: int
    """Number of outcomes N; indices lie in [0, N)."""

    def __post_init__(self) -> None:
        for name, dtype in (("i", np.int64), ("j", np.int64), ("n", np.float64), ("p", np.float64)):
            object.__setattr__(self, name, _as(name, getattr(self, name), dtype))
        object.__setattr__(self, "n_outcomes", int(self.n_outcomes))
        _check_common("PairStats", {"i": self.i, "j": self.j}, self.n, self.p, "p", self.n_outcomes)
        bad = np.flatnonzero(self.i >= self.j)
        if bad.size:
            k = bad[0]
            raise InvalidStatsError(
                f"PairStats: pair {k} has i = {self.i[k]}, j = {self.j[k]}; unordered pairs need "
                "i < j (fold oriented data with fit.stats.fold)"
            )

    @property
    def n_pairs(self) -> int:
        """Number of pair records m."""
        return len(self.n)

    def outcome_weight(self) -> FloatArray:
        """Total observation weight touching each outcome, shape (N,)."""
        w = np.bincount(self.i, self.n, minlength=self.n_outcomes)
        return (w + np.bincount(self.j, self.n, minlength=self.n_outcomes)).astype(np.float64)

    def observed(self) -> npt.NDArray[np.bool_]:
        """Mask of outcomes that take part in at least one pair with positive weight, (N,)."""
        return self.outcome_weight() > 0

    def keys(self) -> IntArray:
        """Pair keys ``i * N + j``, shape (m,)."""
        return pair_keys(self.i, self.j, self.n_outcomes)

    def select(self, mask: npt.ArrayLike) -> PairStats:
        """The pairs where ``mask`` (bool, shape (m,)) is true; same outcome indexing."""
        m = np.asarray(mask, dtype=bool)
        return PairStats(self.i[m], self.j[m], self.n[m], self.p[m], self.n_outcomes)

    def with_weights(self, n: npt.ArrayLike) -> PairStats:
        """The same pairs and labels with new weights ``n`` (shape (m,)), e.g. for a bootstrap."""
        return PairStats(self.i, self.j, n, self.p, self.n_outcomes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class OrientedStats:
    """Per ordered presentation (first-listed, second-listed): count and mean P(first wins)."""

    first: IntArray
    """Index of the outcome shown first (option A), int64, shape (m,)."""
    second: IntArray
    """Index of the outcome shown second (option B), int64, shape (m,), != first."""
    n: FloatArray
    """Number of rows with this presentation, float64 >= 0, shape (m,)."""
    p_first: FloatArray
    """Mean probability that the first-listed outcome is chosen, float64 in [0, 1], (m,)."""
    n_outcomes: int
    """Number of outcomes N; indices lie in [0, N)."""

    def __post_init__(self) -> None:
        for name, dtype in (
            ("first", np.int64),
            ("second", np.int64),
            ("n", np.float64),
            ("p_first", np.float64),
        ):
            object.__setattr__(self, name, _as(name, getattr(self, name), dtype))
        object.__setattr__(self, "n_outcomes", int(self.n_outcomes))
        _check_common(
            "OrientedStats",
            {"first": self.first, "second": self.second},
            self.n,
            self.p_first,
            "p_first",
            self.n_outcomes,
        )
        bad = np.flatnonzero(self.first == self.second)
        if bad.size:
            raise InvalidStatsError(
                f"OrientedStats: record {bad[0]} compares outcome {self.first[bad[0]]} with "
                "itself; drop self-comparisons before aggregating"
            )

    @property
    def n_pairs(self) -> int:
        """Number of ordered-pair records m."""
        return len(self.n)

    @classmethod
    def from_rows(
        cls,
        first: npt.ArrayLike,
        second: npt.ArrayLike,
        p_first: npt.ArrayLike,
        n_outcomes: int,
    ) -> OrientedStats:
        """Aggregate raw rows (one per prompt) in numpy; :mod:`fit.data` does this in DuckDB.

        Args:
            first: index shown first per row, shape (r,).
            second: index shown second per row, shape (r,).
            p_first: P(first-listed chosen) per row, shape (r,).
            n_outcomes: number of outcomes N.

        Returns:
            One record per distinct (first, second), sorted by key, with n = row count.
        """
        f = np.asarray(first, dtype=np.int64)
        s = np.asarray(second, dtype=np.int64)
        p = np.asarray(p_first, dtype=np.float64)
        keys, inv = np.unique(pair_keys(f, s, n_outcomes), return_inverse=True)
        n = np.bincount(inv, minlength=len(keys)).astype(np.float64)
        mean = np.bincount(inv, p, minlength=len(keys)) / np.maximum(n, 1.0)
        return cls(keys // n_outcomes, keys % n_outcomes, n, mean.astype(np.float64), n_outcomes)


def fold(oriented: OrientedStats) -> PairStats:
    """Fold both presentation orders onto unordered pairs ``i < j``.

    A record (first = j, second = i) with P(first wins) = q is evidence P(i ≻ j) = 1 − q. Records
    of the same unordered pair are merged with weights ``n``: the result has
    ``n = n_ij + n_ji`` and ``p = (n_ij·p_ij + n_ji·(1 − p_ji)) / n`` (the plain mean where the
    total weight is zero).

    Args:
        oriented: ordered-pair statistics.

    Returns:
        Unordered-pair statistics sorted by ``(i, j)``.
    """
    f, s = oriented.first, oriented.second
    i = np.minimum(f, s)
    j = np.maximum(f, s)
    p_i = np.where(f < s, oriented.p_first, 1.0 - oriented.p_first)
    keys, inv = np.unique(pair_keys(i, j, oriented.n_outcomes), return_inverse=True)
    n = np.bincount(inv, oriented.n, minlength=len(keys)).astype(np.float64)
    weighted = np.bincount(inv, oriented.n * p_i, minlength=len(keys))
    count = np.bincount(inv, minlength=len(keys))
    plain = np.bincount(inv, p_i, minlength=len(keys)) / np.maximum(count, 1)
    p = np.where(n > 0, weighted / np.where(n > 0, n, 1.0), plain)
    N = oriented.n_outcomes
    return PairStats(keys // N, keys % N, n, np.clip(p, 0.0, 1.0), N)
