"""Held-out metrics per presented order, and the position-only baseline they are judged against.

A model answers each prompt in the order it was shown, so a fit is scored on what it predicts
for each presentation (first-listed f, second-listed s), not on order-averaged labels:

    P(f chosen) = Φ((μ_f − μ_s + β) / √(σ_f² + σ_s² + ε))    (Bradley–Terry: sigmoid)

with β the fit's position term (0 for a fit without one). Averaging the two orders first hides
position bias: labels sit near ½ whatever the utilities, so accuracy there counts the side of
the noise, and a position-bias fit scored without its β looks worse than a plain fit.

The baseline knows position and nothing else: one probability q = P(first-listed chosen) for
every presentation, fitted on the training presentations (the maximum-likelihood q is their
n-weighted mean P(first); on the probit scale β₀ = Φ⁻¹(q)). Utilities earn credit only for
what they predict beyond it (docs/methods.md, "Metrics of a fit").

Conventions as :mod:`fit.metrics`: every presentation record counts once; accuracy thresholds
prediction and label at ½, leaves out labels of exactly ½ and gives half a point to a
prediction of exactly ½; log-loss is the cross-entropy against the soft label, in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import log_expit, log_ndtr, ndtri

from fit.errors import EmptyDataError, FitError
from fit.result import BRADLEY_TERRY, FitResult, predict_logit_or_z
from fit.stats import OrientedStats

FloatArray = npt.NDArray[np.float64]

#: Held-out log-loss per presentation (nats) by which the utilities must beat the
#: position-only baseline before a reading may say that they predict choices.
UTILITY_MARGIN = 0.02

_CLIP = 1e-6


@dataclass(frozen=True)
class OrientedScore:
    """How well one predictor does on presentations."""

    accuracy: float
    """Share of presentations whose predicted winner (first or second) matches the label's;
    NaN when every label is exactly ½."""
    log_loss: float
    """Mean cross-entropy per presentation, nats (0.693 is a coin flip)."""
    n: int
    """Presentation records scored."""


def _score(z: FloatArray, lp: FloatArray, lq: FloatArray, oriented: OrientedStats) -> OrientedScore:
    label = oriented.p_first
    decided = label != 0.5
    credit = np.where(z == 0, 0.5, ((z > 0) == (label > 0.5)).astype(np.float64))
    n_decided = int(decided.sum())
    acc = float(credit[decided].mean()) if n_decided else float("nan")
    loss = -(label * lp + (1.0 - label) * lq)
    return OrientedScore(acc, float(loss.mean()), oriented.n_pairs)


def _require(result_n: int | None, oriented: OrientedStats, what: str) -> None:
    if oriented.n_pairs == 0:
        raise EmptyDataError(f"{what}: no presentations to score")
    if result_n is not None and result_n != oriented.n_outcomes:
        raise FitError(
            f"{what}: fit has {result_n} outcomes but the data has {oriented.n_outcomes}; "
            "score a fit against data over the same outcome list"
        )


def oriented_score(result: FitResult, oriented: OrientedStats, beta: float = 0.0) -> OrientedScore:
    """Score a fit on presentations, each predicted in its own order with the position term.

    Args:
        result: a fit over the same N outcomes.
        oriented: presentations to score (usually the held-out round, partial pairs included:
            each order is predicted on its own).
        beta: the fit's first-position shift on the scale of ``result.mu``
            (:attr:`fit.position.PositionFit.beta`); 0 for a fit without one.

    Returns:
        Accuracy and log-loss per presentation.
    """
    _require(result.n_outcomes, oriented, "oriented_score")
    if not np.isfinite(beta):
        raise FitError(f"oriented_score: beta = {beta}; pass a finite β, or 0 for a plain fit")
    z = predict_logit_or_z(result, oriented.first, oriented.second, offset=float(beta))
    if result.estimator == BRADLEY_TERRY:
        lp, lq = log_expit(z), log_expit(-z)
    else:
        lp, lq = log_ndtr(z), log_ndtr(-z)
    return _score(z, lp, lq, oriented)


def position_baseline(train: OrientedStats) -> float:
    """The position-only predictor: q = P(first-listed chosen), the n-weighted mean label of
    the training presentations (its maximum-likelihood value), kept inside (10⁻⁶, 1 − 10⁻⁶).

    Raises:
        EmptyDataError: no training presentation with positive weight.
    """
    total = float(train.n.sum())
    if total <= 0:
        raise EmptyDataError("position_baseline: no training presentations to fit q on")
    q = float(train.n @ train.p_first) / total
    return float(np.clip(q, _CLIP, 1.0 - _CLIP))


def baseline_beta(q: float) -> float:
    """The baseline on the probit scale: β₀ = Φ⁻¹(q)."""
    return float(ndtri(q))


def baseline_score(q: float, oriented: OrientedStats) -> OrientedScore:
    """Score the constant prediction P(first chosen) = ``q`` on presentations."""
    _require(None, oriented, "baseline_score")
    if not 0.0 < q < 1.0:
        raise FitError(f"baseline_score: q = {q}; a baseline probability lies in (0, 1)")
    m = oriented.n_pairs
    z = np.full(m, q - 0.5)
    lp = np.full(m, np.log(q))
    lq = np.full(m, np.log1p(-q))
    return _score(z, lp, lq, oriented)


def utility_gain(holdout_log_loss: float | None, baseline_log_loss: float | None) -> float | None:
    """How much lower the fit's held-out log-loss per presentation is than the baseline's
    (nats; positive: the utilities add something); None when either is missing."""
    if holdout_log_loss is None or baseline_log_loss is None:
        return None
    if not (np.isfinite(holdout_log_loss) and np.isfinite(baseline_log_loss)):
        return None
    return float(baseline_log_loss - holdout_log_loss)
