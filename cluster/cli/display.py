"""Small display helpers shared by CLI commands (rich is imported lazily).

:func:`echo_table` prints query results the way DuckDB's own shell does: a boxed table that
fits the terminal, long cells cut with an ellipsis, columns elided from the middle when they do
not all fit (with a note), and the row count.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import click

from cluster.reports.format import cell

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

#: Widest a cell is shown before it is cut (DuckDB's shell uses a similar cap).
MAX_CELL = 40


@cache
def console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=False)


def _cell(value: Any) -> str:
    return " ".join(cell(value).splitlines())


def _type_name(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "varchar"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return str(arrow_type)


def _cut(text: str, width: int) -> str:
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(width - 1, 0)) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    from rich.cells import cell_len

    gap = " " * max(width - cell_len(text), 0)
    return gap + text if right else text + gap


def layout_columns(natural: list[int], width: int) -> tuple[list[int], list[int]]:
    """Which columns to show and how wide, for a table whose columns want ``natural`` widths
    in ``width`` terminal cells: columns are taken alternately from the left and the right end
    while they fit (an elided middle costs one narrow column); a single column that is still
    too wide is narrowed. Returns (indices shown, in order; their widths)."""
    n = len(natural)

    def total(ws: list[int], elided: bool) -> int:
        return sum(ws) + 3 * len(ws) + 1 + (4 if elided else 0)

    if total(natural, False) <= width:
        return list(range(n)), list(natural)
    left: list[int] = []
    right: list[int] = []
    for k in range(n):
        idx = k // 2 if k % 2 == 0 else n - 1 - k // 2
        trial = sorted([*left, *right, idx])
        if total([natural[i] for i in trial], True) > width:
            break
        (left if k % 2 == 0 else right).append(idx)
    shown = sorted([*left, *right]) or [0]
    widths = [natural[i] for i in shown]
    excess = total(widths, len(shown) < n) - width
    if excess > 0:  # one column alone is too wide: narrow it (never below 1 cell)
        widths[0] = max(widths[0] - excess, 1)
    return shown, widths


def table_lines(table: pa.Table, *, width: int, limit: int) -> list[str]:
    """The lines :func:`echo_table` prints (``limit`` 0 shows every row)."""
    from rich.cells import cell_len

    names = table.column_names
    types = [_type_name(f.type) for f in table.schema]
    import pyarrow as pa

    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]
    body = table if not limit else table.slice(0, limit)
    rows = [[_cell(v) for v in row.values()] for row in body.to_pylist()]
    natural = [
        min(
            max([cell_len(names[k]), cell_len(types[k])] + [cell_len(r[k]) for r in rows]),
            MAX_CELL,
        )
        for k in range(len(names))
    ]
    shown, widths = layout_columns(natural, width)
    elided = len(shown) < len(names)
    # the elision column sits after the last column taken from the left
    split = next((p for p in range(1, len(shown)) if shown[p] != shown[p - 1] + 1), len(shown))

    def line(cells: list[str], right: list[bool]) -> str:
        parts = [_pad(_cut(c, w), w, r) for c, w, r in zip(cells, widths, right, strict=True)]
        if elided:
            parts.insert(split, "…")
        return "│ " + " │ ".join(parts) + " │"

    def rule(left: str, mid: str, right: str) -> str:
        segments = ["─" * (w + 2) for w in widths]
        if elided:
            segments.insert(split, "─" * 3)
        return left + mid.join(segments) + right

    out = [rule("┌", "┬", "┐")]
    out.append(line([names[i] for i in shown], [False] * len(shown)))
    out.append(line([types[i] for i in shown], [False] * len(shown)))
    out.append(rule("├", "┼", "┤"))
    for r in rows:
        out.append(line([r[i] for i in shown], [numeric[i] for i in shown]))
    out.append(rule("└", "┴", "┘"))
    count = f"{table.num_rows:,} row{'s' if table.num_rows != 1 else ''}"
    if len(rows) < table.num_rows:
        count += f" ({len(rows):,} shown; --limit N, or --format csv for all)"
    out.append(_cut(count, width))
    if elided:
        hidden = ", ".join(names[i] for i in range(len(names)) if i not in shown)
        out.append(_cut(f"{len(names)} columns ({len(shown)} shown; elided: {hidden})", width))
    return out


def echo_table(table: pa.Table, *, limit: int = 200, title: str | None = None) -> None:
    """Print an Arrow table boxed to the terminal's width (at most ``limit`` rows; 0 = all)."""
    width = console().width
    if title:
        click.echo(_cut(title, width))
    for text in table_lines(table, width=width, limit=limit):
        click.echo(text)
