"""Numerics: utility estimators (Thurstonian, Bradley–Terry, position bias), metrics and
active-learning acquisition. Arrays or DuckDB relations in, typed results out; no I/O policy.

torch is imported only by :mod:`fit.torch_backend`, when used.
"""

from fit.acquisition import (
    budget,
    information_acquire,
    pseudo_labels,
    random_regular_start,
    reference_acquire,
)
from fit.bradley_terry import fit_bradley_terry, fit_bradley_terry_batch
from fit.errors import (
    DisconnectedGraphWarning,
    EmptyDataError,
    FitError,
    FitWarning,
    InvalidStatsError,
    NotConvergedWarning,
    UnknownOutcomeError,
    UnobservedOutcomesError,
)
from fit.full import FitWithIntervals, fit_with_intervals
from fit.metrics import (
    accuracy,
    bootstrap_mu,
    calibration,
    holdout_pairs,
    log_loss,
    order_consistency,
    split_holdout,
)
from fit.position import PositionFit, fit_position, predict_first
from fit.result import FitResult, predict_proba
from fit.stats import OrientedStats, PairStats, fold
from fit.thurstonian import fit_thurstonian, fit_thurstonian_batch

__all__ = [
    "DisconnectedGraphWarning",
    "EmptyDataError",
    "FitError",
    "FitResult",
    "FitWithIntervals",
    "FitWarning",
    "InvalidStatsError",
    "NotConvergedWarning",
    "OrientedStats",
    "PairStats",
    "PositionFit",
    "UnknownOutcomeError",
    "UnobservedOutcomesError",
    "accuracy",
    "bootstrap_mu",
    "budget",
    "calibration",
    "fit_bradley_terry",
    "fit_bradley_terry_batch",
    "fit_position",
    "fit_thurstonian",
    "fit_thurstonian_batch",
    "fit_with_intervals",
    "fold",
    "holdout_pairs",
    "information_acquire",
    "log_loss",
    "order_consistency",
    "predict_first",
    "predict_proba",
    "pseudo_labels",
    "random_regular_start",
    "reference_acquire",
    "split_holdout",
]
