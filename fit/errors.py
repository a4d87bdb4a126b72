"""Errors and warnings raised by the fit package."""

from __future__ import annotations


class FitError(Exception):
    """Root of every error the fit package raises on purpose."""


class InvalidStatsError(FitError, ValueError):
    """Pair statistics are malformed: shapes differ, indices out of range, labels outside [0, 1]."""


class EmptyDataError(FitError):
    """There is nothing to fit: no pairs, or no rows matched the query's filters."""


class UnobservedOutcomesError(FitError):
    """Some outcomes take part in no observed pair, so their utilities are not identified."""

    def __init__(self, message: str, indices: list[int]) -> None:
        super().__init__(message)
        self.indices = indices


class UnknownOutcomeError(FitError):
    """The data names an outcome id that is not in the outcome-id → index mapping given."""


class FitWarning(UserWarning):
    """Root of the warnings the fit package emits."""


class NotConvergedWarning(FitWarning):
    """The optimiser stopped at its iteration limit or on a failed line search."""


class DisconnectedGraphWarning(FitWarning):
    """The comparison graph has several components; their relative utilities are not identified."""
