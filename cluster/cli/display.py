"""Small display helpers shared by CLI commands (rich is imported lazily)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console


@cache
def console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=False)


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def echo_table(table: pa.Table, *, limit: int = 200, title: str | None = None) -> None:
    """Print an Arrow table as a rich table (at most ``limit`` rows)."""
    from rich.table import Table

    view = Table(title=title, title_justify="left")
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in table.slice(0, limit).to_pylist():
        view.add_row(*(_cell(v) for v in row.values()))
    out = console()
    out.print(view)
    if table.num_rows > limit:
        out.print(f"… {table.num_rows - limit} more rows (use --limit or --format csv)")
    else:
        out.print(f"{table.num_rows} row(s)")
