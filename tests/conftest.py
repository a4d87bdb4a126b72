"""Shared fixtures. Real Parquet, DuckDB and local Ray; only the model is ever replaced."""

from __future__ import annotations

import os

import pytest

# Never reach for a model hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def root(tmp_path):
    """An empty local results root."""
    path = tmp_path / "results"
    path.mkdir()
    return str(path)
