"""Errors raised by the elicitation package.

Every message says what was wrong, the value seen and what to do about it.
"""

from __future__ import annotations


class ElicitError(Exception):
    """Root of every error the elicitation package raises on purpose."""


class OutcomeSetError(ElicitError):
    """An outcome file is missing, unreadable or invalid."""


class TemplateError(ElicitError):
    """A prompt template is malformed (e.g. a placeholder is missing)."""


class ModelNotFoundError(ElicitError):
    """A model name is neither in the registry nor a local folder."""


class MissingDependencyError(ElicitError):
    """An optional dependency needed by a scorer is not installed."""


class ScorerError(ElicitError):
    """A scorer cannot work at all (engine failed to start, died for good, bad config)."""


class ErrorBudgetExceeded(ScorerError):
    """Too many requests failed; the run stops rather than store mostly errors."""
