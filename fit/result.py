"""Fit results and the predictions they make.

Utilities are reported normalised per model: ``mu`` has mean 0 and standard deviation 1 over
the observed outcomes. The optimiser works in a gauge of its own (see :mod:`fit.thurstonian`);
``scale`` is the factor back to it (raw = mu · scale), which matters only where the link has a
fixed scale:

- Thurstonian: P(i ≻ j) = Φ((μᵢ − μⱼ) / √(σᵢ² + σⱼ² + ε)), with σ² and ε rescaled by 1/scale²
  alongside μ, so the formula holds on the reported scale as it is.
- Bradley–Terry: P(i ≻ j) = sigmoid(scale · (μᵢ − μⱼ)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtr

from fit.errors import FitError

FloatArray = npt.NDArray[np.float64]

THURSTONIAN = "thurstonian"
THURSTONIAN_HOMOSCEDASTIC = "thurstonian-homoscedastic"
BRADLEY_TERRY = "bradley-terry"
ESTIMATORS = (THURSTONIAN, THURSTONIAN_HOMOSCEDASTIC, BRADLEY_TERRY)


@dataclass(frozen=True)
class FitResult:
    """Utilities of one model, normalised to mean 0 and sd 1 over its observed outcomes."""

    mu: FloatArray
    """Utility mean per outcome, shape (N,); 0 for unobserved outcomes."""
    sigma2: FloatArray | None
    """Utility variance per outcome on the scale of ``mu``, shape (N,); +inf for unobserved
    outcomes; None for Bradley–Terry."""
    iterations: int
    """Optimiser iterations (shared by every model of a batched fit)."""
    converged: bool
    """Whether the optimiser met its tolerance (False: iteration limit or failed line search)."""
    loss: float
    """Training loss: mean binary cross-entropy against the soft labels, weighted by n."""
    estimator: str
    """``thurstonian``, ``thurstonian-homoscedastic`` or ``bradley-terry``."""
    seconds: float
    """Wall time of the optimisation (of the whole batch, for a batched fit)."""
    scale: float = 1.0
    """Standard deviation of the fitted utilities in the optimiser's gauge: raw = mu · scale."""
    eps: float = 0.0
    """The variance floor ε of the probit link, on the scale of ``mu`` (Thurstonian only)."""
    observed: npt.NDArray[np.bool_] | None = None
    """Mask of outcomes with data, shape (N,); None when all were observed."""

    @property
    def n_outcomes(self) -> int:
        """Number of outcomes N."""
        return len(self.mu)


def _index(result: FitResult, idx: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(idx, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= result.n_outcomes):
        bad = arr[(arr < 0) | (arr >= result.n_outcomes)][0]
        raise FitError(f"{name} index {bad} is outside [0, {result.n_outcomes})")
    return arr


def predict_logit_or_z(
    result: FitResult, i: npt.ArrayLike, j: npt.ArrayLike, offset: float = 0.0
) -> FloatArray:
    """The link argument for P(i ≻ j): z for probit models, the logit for Bradley–Terry.

    Args:
        result: a fit.
        i, j: outcome indices, broadcastable int arrays.
        offset: added to μᵢ − μⱼ before scaling (a position bias β on the ``mu`` scale).

    Returns:
        z (or logit) per pair; 0 where either outcome is unobserved.
    """
    ii = _index(result, i, "i")
    jj = _index(result, j, "j")
    d = result.mu[ii] - result.mu[jj] + offset
    if result.estimator == BRADLEY_TERRY:
        z = result.scale * d
    elif result.sigma2 is not None:
        with np.errstate(invalid="ignore"):
            z = d / np.sqrt(result.sigma2[ii] + result.sigma2[jj] + result.eps)
    else:
        raise FitError(f"result of estimator {result.estimator!r} has no sigma2")
    if result.observed is not None:
        z = np.where(result.observed[ii] & result.observed[jj], z, 0.0)
    return np.asarray(z, dtype=np.float64)


def predict_proba(result: FitResult, i: npt.ArrayLike, j: npt.ArrayLike) -> FloatArray:
    """Model probability that outcome i is preferred to outcome j.

    Thurstonian: P(i ≻ j) = Φ((μᵢ − μⱼ) / √(σᵢ² + σⱼ² + ε)); Bradley–Terry:
    sigmoid(scale · (μᵢ − μⱼ)). Pairs involving an unobserved outcome get 0.5.

    Args:
        result: a fit.
        i, j: outcome indices, int arrays of the same (or broadcastable) shape.

    Returns:
        Probabilities in [0, 1], the broadcast shape of i and j.
    """
    z = predict_logit_or_z(result, i, j)
    return expit(z) if result.estimator == BRADLEY_TERRY else ndtr(z)
