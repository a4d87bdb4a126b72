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


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray on 127.0.0.1 shared by the tests of a session."""
    from cluster.execution.ray_runtime import init_ray

    ray = init_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()
