"""Results storage: schemas, layout, atomic Parquet writing, manifests and the SQL catalog.

``storage`` imports none of valuescope's other packages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.errors import StorageError
from storage.fs import Root, polars_s3_options
from storage.layout import RunLayout, check_keys, model_key

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Root", "RunLayout", "StorageError", "check_keys", "model_key", "scan"]


def scan(root: str | Root, table: str) -> pl.LazyFrame:
    """A polars LazyFrame over one table of a results root (same files the SQL views read).

    Example::

        storage.scan("results", "comparisons").filter(pl.col("model") == "smollm2-135m")
    """
    import polars as pl

    from storage.schemas import TABLES, schema_for

    root = root if isinstance(root, Root) else Root(root)
    if table not in TABLES:
        raise StorageError(f"unknown table {table!r}; known tables: {', '.join(sorted(TABLES))}")
    if table == "outcomes":
        files = root.list_files(root.path("runs"), "outcomes.parquet")
    else:
        files = root.list_files(root.path(table), ".parquet")
    if not files:
        return pl.LazyFrame(pl.from_arrow(schema_for(table).empty_table()))
    if root.is_local:
        return pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert")
    uri_files = [f"s3://{f}" for f in files]
    return pl.scan_parquet(
        uri_files,
        hive_partitioning=False,
        missing_columns="insert",
        storage_options=polars_s3_options(),
    )
