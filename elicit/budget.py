"""The error budget: when failed queries stop a run, decided in one place.

A model's ``error_budget`` (``elicit.config.ModelConfig``) is the share of failed queries it may
have. The budget is judged only once :data:`MIN_QUERIES` queries have been counted, so a few early
failures (a cold endpoint, the first shard of a bad batch) never stop a run on their own. The
openai scorer applies it to its HTTP requests and the run driver to the rows of the run.
"""

from __future__ import annotations

MIN_QUERIES = 20
"""Queries counted before the error budget is enforced."""


def over_budget(failed: int, total: int, budget: float) -> bool:
    """Whether ``failed`` of ``total`` queries exceed the budget (a share in [0, 1])."""
    return total >= MIN_QUERIES and failed > budget * total
