"""Expected utility: do a model's utilities of gambles match the probability-weighted utilities
of what the gambles can lead to?

A lottery L pays outcome oₖ with probability pₖ. An expected-utility maximiser has
``U(L) = Σₖ pₖ·U(oₖ)`` up to the affine freedom of utilities, so we compare the fitted U(L)
with that expectation EU(L) across lotteries by

- Pearson r between U(L) and EU(L);
- the mean absolute error after z-scoring both across the lotteries (0 for an exact match up
  to an affine map);
- the violation rate: over all pairs of lotteries, the share where the expectation and the
  fitted utilities order the two lotteries differently (pairs with equal expectation are left
  out).

*Explicit* lotteries state the probabilities in the text; *implicit* ones describe an uncertain
event (a coin toss, a card draw) whose sub-outcomes have probabilities known to us but not
stated. Both use the same statistics; :func:`lotteries_from_attributes` reads either kind from
outcome attributes as written by ``elicit.generators``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fit.analyses._common import (
    AnalysisInputError,
    FloatArray,
    lookup,
    new_figure,
    pearson,
    save_figure,
    zscore,
)

_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Lottery:
    """A gamble over outcomes: ``outcomes[k]`` happens with probability ``probs[k]``."""

    id: str
    """Outcome id of the lottery itself (its fitted utility is looked up under this id)."""
    outcomes: tuple[str, ...]
    """Outcome ids of the possible results."""
    probs: tuple[float, ...]
    """Their probabilities, each in [0, 1], summing to 1 (within 1e-3; renormalised)."""

    def __post_init__(self) -> None:
        if len(self.outcomes) != len(self.probs) or not self.outcomes:
            raise AnalysisInputError(
                f"lottery {self.id!r}: {len(self.outcomes)} outcome(s) but {len(self.probs)} "
                "probabilities; give one probability per outcome"
            )
        p = np.asarray(self.probs, dtype=np.float64)
        if np.any(~np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > _PROB_TOLERANCE:
            raise AnalysisInputError(
                f"lottery {self.id!r}: probabilities {list(self.probs)} must be >= 0 and sum to 1"
            )
        object.__setattr__(self, "outcomes", tuple(str(o) for o in self.outcomes))
        object.__setattr__(self, "probs", tuple(float(x) for x in p / p.sum()))


@dataclass(frozen=True)
class ExpectedUtilityResult:
    """Agreement between fitted lottery utilities and expected utilities."""

    lottery_ids: tuple[str, ...]
    """Ids of the lotteries compared, in the order of the arrays below."""
    observed: FloatArray
    """Fitted utility U(L) of each lottery, shape (L,)."""
    expected: FloatArray
    """Expected utility Σ p·U(o) of each lottery, shape (L,)."""
    pearson_r: float
    """Pearson correlation of ``observed`` and ``expected`` (1 = perfectly linear)."""
    mae_z: float
    """Mean |z(observed) − z(expected)|, both z-scored across the lotteries (0 = exact)."""
    violation_rate: float
    """Share of lottery pairs where sign(ΔEU) ≠ sign(ΔU), in [0, 1]."""
    n_lottery_pairs: int
    """Number of lottery pairs behind ``violation_rate`` (pairs with ΔEU = 0 are left out)."""

    @property
    def n_lotteries(self) -> int:
        """Number of lotteries compared."""
        return len(self.observed)


def lotteries_from_attributes(
    attributes: Mapping[str, Mapping[str, Any]], kinds: Sequence[str] = ("lottery", "event")
) -> list[Lottery]:
    """Lotteries from outcome attributes.

    Every outcome whose ``kind`` attribute is in ``kinds`` must carry ``components`` (outcome
    ids) and ``probs`` (their probabilities), as written by ``elicit.generators``.

    Args:
        attributes: outcome id → attributes mapping (e.g. parsed from the outcomes table).
        kinds: which ``kind`` values mark a lottery.
    """
    lotteries = []
    for oid, attrs in attributes.items():
        if attrs.get("kind") not in kinds:
            continue
        if "components" not in attrs or "probs" not in attrs:
            raise AnalysisInputError(
                f"lottery outcome {oid!r}: attributes need 'components' and 'probs', got "
                f"{sorted(attrs)}"
            )
        lotteries.append(Lottery(oid, tuple(attrs["components"]), tuple(attrs["probs"])))
    return lotteries


def expected_utilities(lotteries: Sequence[Lottery], utilities: Mapping[str, float]) -> FloatArray:
    """Σ p·U(o) per lottery, shape (L,), vectorised over the flattened components."""
    comps = [o for lot in lotteries for o in lot.outcomes]
    u = lookup("utilities of lottery components", utilities, comps)
    p = np.array([x for lot in lotteries for x in lot.probs], dtype=np.float64)
    owner = np.repeat(np.arange(len(lotteries)), [len(lot.outcomes) for lot in lotteries])
    return np.bincount(owner, p * u, minlength=len(lotteries)).astype(np.float64)


def compare(
    observed: FloatArray, expected: FloatArray, lottery_ids: Sequence[str] | None = None
) -> ExpectedUtilityResult:
    """The statistics of the module docstring for two aligned arrays of shape (L,), L >= 3."""
    obs = np.asarray(observed, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    if obs.shape != exp.shape or obs.ndim != 1:
        raise AnalysisInputError(
            f"expected utility: observed {obs.shape} and expected {exp.shape} must be 1-D and equal"
        )
    if len(obs) < 3:
        raise AnalysisInputError(f"expected utility: need at least 3 lotteries, got {len(obs)}")
    if not (np.all(np.isfinite(obs)) and np.all(np.isfinite(exp))):
        raise AnalysisInputError("expected utility: utilities must be finite")
    ids = tuple(lottery_ids) if lottery_ids is not None else tuple(str(k) for k in range(len(obs)))
    i, j = np.triu_indices(len(obs), k=1)
    d_exp = np.sign(exp[i] - exp[j])
    d_obs = np.sign(obs[i] - obs[j])
    decided = d_exp != 0
    n_pairs = int(decided.sum())
    violations = float(np.mean(d_exp[decided] != d_obs[decided])) if n_pairs else float("nan")
    return ExpectedUtilityResult(
        lottery_ids=ids,
        observed=obs,
        expected=exp,
        pearson_r=pearson(obs, exp),
        mae_z=float(np.mean(np.abs(zscore(obs) - zscore(exp)))),
        violation_rate=violations,
        n_lottery_pairs=n_pairs,
    )


def intervals(
    result: ExpectedUtilityResult, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95 % bootstrap-over-lotteries intervals of ``pearson_r``, ``mae_z`` and
    ``violation_rate`` (a lottery pair counts once per pair of drawn copies). With fewer than 4
    lotteries the intervals are NaN: three points cannot say how well EU holds."""
    from fit.analyses.intervals import NAN_INTERVAL, percentile, resample

    obs, exp = result.observed, result.expected
    n = len(obs)
    if n < 4:
        return dict.fromkeys(("pearson_r", "mae_z", "violation_rate"), NAN_INTERVAL)
    idx = resample(n, n_boot, seed)
    o, e = obs[idx], exp[idx]

    def z(a: FloatArray) -> FloatArray:
        sd = a.std(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sd > 0, (a - a.mean(axis=1, keepdims=True)) / sd, 0.0)

    zo, ze = z(o), z(e)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (zo * ze).mean(axis=1)
    r[(o.std(axis=1) == 0) | (e.std(axis=1) == 0)] = np.nan
    mae = np.abs(zo - ze).mean(axis=1)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    i, j = np.triu_indices(n, k=1)
    d_exp, d_obs = np.sign(exp[i] - exp[j]), np.sign(obs[i] - obs[j])
    decided = d_exp != 0
    w = counts[:, i[decided]] * counts[:, j[decided]]
    bad = (d_exp[decided] != d_obs[decided]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        viol = (w @ bad) / w.sum(axis=1)
    return {
        "pearson_r": percentile(r),
        "mae_z": percentile(mae),
        "violation_rate": percentile(viol),
    }


def expected_utility(
    lotteries: Sequence[Lottery], utilities: Mapping[str, float]
) -> ExpectedUtilityResult:
    """Compare fitted lottery utilities with expected utilities.

    Works for explicit lotteries and for implicit ones (an event outcome whose components are
    its sub-outcomes) alike.

    Args:
        lotteries: the lotteries (see :func:`lotteries_from_attributes`); at least 3.
        utilities: outcome id → fitted utility μ, covering the lotteries and their components
            (fitted jointly, so they share one scale).
    """
    if len(lotteries) < 3:
        raise AnalysisInputError(
            f"expected utility: need at least 3 lotteries, got {len(lotteries)}"
        )
    ids = [lot.id for lot in lotteries]
    observed = lookup("utilities of lotteries", utilities, ids)
    return compare(observed, expected_utilities(lotteries, utilities), ids)


def plot_expected_utility(result: ExpectedUtilityResult, path: str | Path) -> Path:
    """Scatter of z-scored U(L) against z-scored Σ p·U(o), with the identity line."""
    fig = new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    ze, zo = zscore(result.expected), zscore(result.observed)
    ax.scatter(ze, zo, s=14, color="#4c72b0", alpha=0.8)
    lim = float(max(np.abs(ze).max(), np.abs(zo).max(), 1.0)) * 1.1
    ax.plot([-lim, lim], [-lim, lim], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("expected utility Σ p·U(o) (z-score)")
    ax.set_ylabel("fitted utility U(L) (z-score)")
    ax.set_title(
        f"Expected utility: r = {result.pearson_r:.3f}, MAE = {result.mae_z:.3f}, "
        f"violations {100 * result.violation_rate:.1f}%"
    )
    return save_figure(fig, path)
