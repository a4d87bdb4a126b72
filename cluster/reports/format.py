"""How values are written for people, in one place: the CLI's tables and the HTML report.

A missing value (None or NaN) is always :data:`NULL`, whatever the column.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

NULL = "–"
"""What a missing value (None, NaN) looks like in every table."""


def missing(value: Any) -> bool:
    """None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def cell(value: Any, digits: int = 4) -> str:
    """Any table cell: floats to ``digits`` significant digits, times to the minute."""
    if missing(value):
        return NULL
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def num(value: Any, decimals: int = 3, *, sign: bool = False) -> str:
    """A number with fixed decimals (``sign``: always show + or −)."""
    if missing(value):
        return NULL
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def pct(value: Any, decimals: int = 1) -> str:
    """A share as a percentage."""
    return NULL if missing(value) else f"{value:.{decimals}%}"
