"""Fixtures for the analysis tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def check_png() -> Callable[[Path], None]:
    """Assert that a path is a non-empty PNG file."""

    def check(path: Path) -> None:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_MAGIC), f"{path} is not a PNG"
        assert len(data) > 1000, f"{path} is suspiciously small ({len(data)} bytes)"

    return check
