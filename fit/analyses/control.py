"""Target preferences and utility control: the numerics behind ``valuescope assembly`` and
``valuescope control``.

- :func:`aggregate_panel` turns the panel's per-persona probabilities P_k(i ≻ j) into a target:
  the mean of the probabilities, or the majority vote (1, 0, or ½ on a tie), the paper's rule.
- :func:`fit_target` fits Thurstonian utilities to a target (a ridge keeps hard majority labels,
  which some ordering may satisfy exactly, from diverging).
- :func:`control_split` divides outcomes into training and held-out outcomes, and pairs among
  training outcomes into training and held-out pairs; every pair touching a held-out outcome is
  held out too, so agreement can be measured on pairs never trained on and on outcomes never seen.
- :func:`agreement` compares a model's P with the target's: the share of pairs where both prefer
  the same side, and the mean absolute difference.
- :func:`lean_axis` and :func:`lean` measure political lean: the direction in utility space along
  which right-leaning panel members differ from left-leaning ones, and where a utility vector sits
  on it (cosine, -1 … +1, positive = towards the right-leaning members).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from fit.analyses._common import (
    AnalysisInputError,
    BoolArray,
    FloatArray,
    IntArray,
    as_float,
    new_figure,
    save_figure,
    spearman,
    zscore,
)

Aggregate = Literal["mean", "majority"]
PairRole = Literal["train", "heldout_pair", "heldout_outcome"]
ROLES: tuple[PairRole, ...] = ("train", "heldout_pair", "heldout_outcome")


@dataclass(frozen=True)
class PanelTarget:
    """A panel's aggregated preferences over m pairs."""

    p: FloatArray
    """Target P(i ≻ j), shape (m,): the mean probability, or the majority (1, 0, ½ on a tie)."""
    p_mean: FloatArray
    """Mean of the members' probabilities, shape (m,)."""
    vote_share: FloatArray
    """Share of members preferring i (a member at exactly ½ counts half), shape (m,)."""
    n_members: IntArray
    """Members with a usable answer on each pair, shape (m,)."""
    member_agreement: FloatArray
    """Per member: share of pairs where the member prefers the target's side, shape (K,)."""


def aggregate_panel(p: npt.ArrayLike, method: Aggregate = "mean") -> PanelTarget:
    """Aggregate members' probabilities into a target.

    Args:
        p: P_k(i ≻ j) per member k and pair, shape (K, m); NaN where a member gave no usable
            answer (left out of that pair's aggregate).
        method: ``mean`` (mean probability) or ``majority`` (vote of the preferred sides).

    Raises:
        AnalysisInputError: no members or no pairs, a pair nobody answered, or an unknown method.
    """
    arr = as_float("panel probabilities", p, ndim=2)
    k, m = arr.shape
    if k == 0 or m == 0:
        raise AnalysisInputError(
            f"aggregate_panel: need at least one member and one pair, got {k} and {m}"
        )
    if method not in ("mean", "majority"):
        raise AnalysisInputError(f"aggregate_panel: unknown method {method!r}; use mean, majority")
    usable = np.isfinite(arr)
    n = usable.sum(axis=0)
    empty = np.flatnonzero(n == 0)
    if empty.size:
        raise AnalysisInputError(
            f"aggregate_panel: {empty.size} pair(s) have no usable answer from any member "
            f"(first: column {empty[0]}); drop them or ask again"
        )
    p_mean = np.nanmean(arr, axis=0)
    votes = np.where(usable, np.where(arr > 0.5, 1.0, np.where(arr < 0.5, 0.0, 0.5)), np.nan)
    share = np.nanmean(votes, axis=0)
    if method == "mean":
        target = p_mean
    else:
        target = np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, 0.5))
    decided = target != 0.5
    member_side = votes[:, decided]
    target_side = (target[decided] > 0.5).astype(np.float64)
    with np.errstate(invalid="ignore"):
        agree = np.where(np.isfinite(member_side), member_side == target_side, np.nan)
        agree = np.where(member_side == 0.5, 0.5, agree)
        member_agreement = (
            np.nanmean(agree, axis=1) if decided.any() else np.full(k, np.nan, dtype=np.float64)
        )
    return PanelTarget(target, p_mean, share, n.astype(np.int64), member_agreement)


def fit_target(
    i: npt.ArrayLike, j: npt.ArrayLike, p: npt.ArrayLike, n_outcomes: int
) -> tuple[FloatArray, FloatArray]:
    """Thurstonian utilities of a target: (μ, σ²), each shape (N,), μ with mean 0 and sd 1.

    Pairs are weighted equally and pairs with a NaN probability are left out; hard labels (0 or
    1) get a ridge of one pseudo-observation on μ so that a target some ordering satisfies
    exactly still has a finite fit. Outcomes in no pair get NaN.
    """
    from fit.stats import PairStats
    from fit.thurstonian import fit_thurstonian

    ii, jj = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    pp = as_float("target p", p)
    if not len(ii) == len(jj) == len(pp):
        raise AnalysisInputError(
            f"fit_target: i, j and p have {len(ii)}, {len(jj)} and {len(pp)} entries"
        )
    ok = np.isfinite(pp)
    ii, jj, pp = ii[ok], jj[ok], pp[ok]
    if len(pp) == 0:
        raise AnalysisInputError("fit_target: the target has no pair with a probability")
    lo, hi = np.minimum(ii, jj), np.maximum(ii, jj)
    pp = np.where(ii <= jj, pp, 1.0 - pp)
    hard = bool(np.any((pp == 0.0) | (pp == 1.0)))
    stats = PairStats(lo, hi, np.ones(len(pp)), pp, n_outcomes)
    result = fit_thurstonian(stats, l2=1.0 if hard else 0.0, allow_unobserved=True)
    sigma2 = result.sigma2 if result.sigma2 is not None else np.ones(n_outcomes)
    observed = result.observed if result.observed is not None else np.ones(n_outcomes, bool)
    return np.where(observed, result.mu, np.nan), np.where(observed, sigma2, np.nan)


@dataclass(frozen=True)
class ControlSplit:
    """Which outcomes and pairs are trained on."""

    heldout_outcome: BoolArray
    """Outcomes never seen in training, shape (N,)."""
    role: npt.NDArray[np.str_]
    """Per pair: ``train``, ``heldout_pair`` (both outcomes trained on, the pair not) or
    ``heldout_outcome`` (touches a held-out outcome), shape (m,)."""

    def mask(self, role: PairRole) -> BoolArray:
        """Pairs of one role, shape (m,)."""
        return np.asarray(self.role == role)


def control_split(
    n_outcomes: int,
    i: npt.ArrayLike,
    j: npt.ArrayLike,
    *,
    heldout_outcomes: float = 0.2,
    heldout_pairs: float = 0.25,
    seed: int = 0,
) -> ControlSplit:
    """Split outcomes, then the pairs among training outcomes, at random with a seed.

    Args:
        n_outcomes: N.
        i, j: outcome indices of the m target pairs.
        heldout_outcomes: share of outcomes held out (rounded; at least one when > 0 and N ≥ 3).
        heldout_pairs: share of the pairs among training outcomes held out (rounded; at least
            one when > 0).
        seed: seed of both draws.

    Raises:
        AnalysisInputError: shares outside [0, 1), or no training pair left.
    """
    for name, share in (("heldout_outcomes", heldout_outcomes), ("heldout_pairs", heldout_pairs)):
        if not 0.0 <= share < 1.0:
            raise AnalysisInputError(f"control_split: {name} must be in [0, 1), got {share}")
    ii, jj = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    rng = np.random.default_rng(seed)
    k = round(heldout_outcomes * n_outcomes)
    if heldout_outcomes > 0 and n_outcomes >= 3:
        k = max(k, 1)
    k = min(k, n_outcomes - 2)
    held = np.zeros(n_outcomes, dtype=bool)
    held[rng.choice(n_outcomes, size=max(k, 0), replace=False)] = True
    role = np.full(len(ii), "train", dtype="<U15")
    role[held[ii] | held[jj]] = "heldout_outcome"
    inner = np.flatnonzero(role == "train")
    n_pairs = round(heldout_pairs * len(inner))
    if heldout_pairs > 0 and len(inner) >= 2:
        n_pairs = max(n_pairs, 1)
    n_pairs = min(n_pairs, len(inner) - 1) if len(inner) else 0
    role[rng.choice(inner, size=max(n_pairs, 0), replace=False)] = "heldout_pair"
    if not np.any(role == "train"):
        raise AnalysisInputError(
            f"control_split: no training pair is left of {len(ii)} target pair(s) over "
            f"{n_outcomes} outcomes; use a target with more pairs or smaller held-out shares"
        )
    return ControlSplit(held, role)


@dataclass(frozen=True)
class Agreement:
    """How well a model's probabilities match a target's on a set of pairs."""

    side: float
    """Share of pairs (target not exactly ½) where model and target prefer the same outcome;
    a model at exactly ½ counts half. NaN when there is no such pair."""
    mean_abs: float
    """Mean |P_model − P_target| over the pairs (NaN when none)."""
    n_pairs: int
    """Pairs compared (both probabilities finite)."""


def agreement(p_model: npt.ArrayLike, p_target: npt.ArrayLike) -> Agreement:
    """Side agreement and mean absolute difference between two aligned P(i ≻ j) vectors."""
    pm, pt = as_float("p_model", p_model), as_float("p_target", p_target)
    if len(pm) != len(pt):
        raise AnalysisInputError(f"agreement: p_model has {len(pm)} pairs, p_target {len(pt)}")
    ok = np.isfinite(pm) & np.isfinite(pt)
    pm, pt = pm[ok], pt[ok]
    decided = pt != 0.5
    if decided.any():
        same = np.where(pm[decided] == 0.5, 0.5, (pm[decided] > 0.5) == (pt[decided] > 0.5))
        side = float(np.mean(same))
    else:
        side = float("nan")
    mean_abs = float(np.mean(np.abs(pm - pt))) if len(pm) else float("nan")
    return Agreement(side, mean_abs, int(ok.sum()))


def lean_axis(member_mu: npt.ArrayLike, member_lean: npt.ArrayLike) -> FloatArray | None:
    """Unit direction over N outcomes along which members' utilities change with their lean.

    The covariance of each outcome's z-scored utility with the members' leans,
    d = Σ_k (ℓ_k − ℓ̄)(z_k − z̄), normalised to length 1. None when the leans do not vary or the
    utilities do not vary with them.

    Args:
        member_mu: members' utilities, shape (K, N) (NaN-free).
        member_lean: members' leans, shape (K,).
    """
    mu = as_float("member utilities", member_mu, ndim=2)
    ell = as_float("member leans", member_lean)
    if mu.shape[0] != len(ell):
        raise AnalysisInputError(f"lean_axis: {mu.shape[0]} utility rows but {len(ell)} leans")
    if len(ell) < 2 or np.ptp(ell) == 0 or not np.all(np.isfinite(mu)):
        return None
    z = np.stack([zscore(row) for row in mu])
    d = (ell - ell.mean()) @ (z - z.mean(axis=0))
    norm = float(np.linalg.norm(d))
    return d / norm if norm > 0 else None


def lean(mu: npt.ArrayLike, axis: npt.ArrayLike) -> float:
    """Cosine between a centred utility vector and a lean axis (-1 … +1; + = right-leaning)."""
    u = as_float("mu", mu)
    a = as_float("axis", axis)
    if len(u) != len(a):
        raise AnalysisInputError(f"lean: mu has {len(u)} outcomes, the axis {len(a)}")
    u = u - u.mean()
    denom = float(np.linalg.norm(u) * np.linalg.norm(a))
    return float(u @ a / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class ControlResult:
    """Before/after measurements of a control run, for the figure and the result tables."""

    agreement_before: dict[PairRole, Agreement]
    """Role (``train``, ``heldout_pair``, ``heldout_outcome``) → agreement before tuning."""
    agreement_after: dict[PairRole, Agreement]
    """Role → agreement after tuning."""
    mu_target: FloatArray
    """Target utilities, shape (N,)."""
    mu_before: FloatArray
    """Utilities fitted to the model's answers before tuning, shape (N,)."""
    mu_after: FloatArray
    """Utilities after tuning, shape (N,)."""
    heldout_outcome: BoolArray
    """Outcomes held out of training, shape (N,)."""

    @property
    def spearman_before(self) -> float:
        """Rank correlation of the model's utilities with the target's, before tuning."""
        return _spearman_finite(self.mu_before, self.mu_target)

    @property
    def spearman_after(self) -> float:
        """Rank correlation with the target's utilities after tuning."""
        return _spearman_finite(self.mu_after, self.mu_target)


def _spearman_finite(x: FloatArray, y: FloatArray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    return spearman(x[ok], y[ok]) if ok.sum() >= 3 else float("nan")


def compare(
    p_before: npt.ArrayLike,
    p_after: npt.ArrayLike,
    p_target: npt.ArrayLike,
    split: ControlSplit,
    mu: tuple[FloatArray, FloatArray, FloatArray],
) -> ControlResult:
    """Agreement per role before and after, with the three utility vectors (target, before,
    after) for the rank correlations and the figure."""
    pb, pa_, pt = (
        as_float("p_before", p_before),
        as_float("p_after", p_after),
        as_float("p", p_target),
    )
    before = {r: agreement(pb[split.mask(r)], pt[split.mask(r)]) for r in ROLES}
    after = {r: agreement(pa_[split.mask(r)], pt[split.mask(r)]) for r in ROLES}
    return ControlResult(before, after, mu[0], mu[1], mu[2], split.heldout_outcome)


def plot_control(result: ControlResult, path: str | Path) -> Path:
    """Two panels: side agreement with the target per role before/after, and model utilities
    against the target's before/after (held-out outcomes drawn hollow)."""
    fig = new_figure(10.0, 4.2)
    ax = fig.add_subplot(1, 2, 1)
    labels = {
        "train": "trained pairs",
        "heldout_pair": "held-out pairs",
        "heldout_outcome": "held-out outcomes",
    }
    x = np.arange(len(ROLES))
    width = 0.38
    for shift, (name, table, colour) in zip(
        (-width / 2, width / 2),
        (
            ("before", result.agreement_before, "#8c8c8c"),
            ("after", result.agreement_after, "#4c72b0"),
        ),
        strict=True,
    ):
        values = [table[r].side for r in ROLES]
        bars = ax.bar(x + shift, values, width, label=name, color=colour)
        for bar, r in zip(bars, ROLES, strict=True):
            ax.annotate(
                f"n={table[r].n_pairs}",
                (bar.get_x() + bar.get_width() / 2, np.nan_to_num(bar.get_height()) + 0.01),
                ha="center",
                fontsize=7,
            )
    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xticks(x, [labels[r] for r in ROLES], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("agreement with the target (preferred side)")
    ax.set_title("Agreement before and after tuning")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    held = result.heldout_outcome
    for mu, name, colour in (
        (result.mu_before, "before", "#8c8c8c"),
        (result.mu_after, "after", "#4c72b0"),
    ):
        ax2.scatter(
            result.mu_target[~held],
            mu[~held],
            color=colour,
            label=f"{name} (trained outcomes)",
            s=18,
        )
        if held.any():
            ax2.scatter(
                result.mu_target[held],
                mu[held],
                facecolors="none",
                edgecolors=colour,
                label=f"{name} (held-out outcomes)",
                s=24,
            )
    ax2.set_xlabel("target utility")
    ax2.set_ylabel("model utility")
    ax2.set_title(
        f"Spearman with target: {result.spearman_before:.2f} → {result.spearman_after:.2f}"
    )
    ax2.legend(fontsize=7)
    return save_figure(fig, path)
