"""Versioned Arrow schemas: the contract between the stages that write results and the SQL,
polars and analysis code that reads them.

Tables may gain columns in a later version; the names and meanings of existing columns stay, so
queries written against them keep working. Every file carries its table name and schema version
in the Parquet metadata (``valuescope.table``, ``valuescope.schema_version``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from storage.errors import SchemaMismatchError

SCHEMA_VERSION = 1

_TS = pa.timestamp("ms", tz="UTC")

OUTCOMES = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("outcome_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("set", pa.string()),
        pa.field("attributes", pa.string()),  # JSON object as text
        pa.field("true_utility", pa.float64()),  # simulated runs only
    ]
)

COMPARISONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("outcome_a", pa.string(), nullable=False),  # shown first, as option A
        pa.field("outcome_b", pa.string(), nullable=False),
        pa.field("orientation", pa.int8(), nullable=False),  # 0: canonical order, 1: flipped
        pa.field("template_id", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("p_a", pa.float64()),  # P(A), renormalised over the two letters
        pa.field("p_b", pa.float64()),
        pa.field("lp_a", pa.float64()),  # raw log-probability of the letter A
        pa.field("lp_b", pa.float64()),
        pa.field("mass", pa.float64()),  # probability on the two letters before renormalising
        pa.field("n_a", pa.int32()),  # sample / reasoning modes
        pa.field("n_b", pa.int32()),
        pa.field("n_unparsed", pa.int32()),
        pa.field("response", pa.string()),
        pa.field("error", pa.string()),  # null when the query succeeded
        pa.field("latency_ms", pa.float32()),
        pa.field("created_at", _TS),
    ]
)

UTILITIES = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("fit_id", pa.string(), nullable=False),
        pa.field("outcome_id", pa.string(), nullable=False),
        pa.field("mu", pa.float64()),  # utility mean, normalised to mean 0, sd 1
        pa.field("sigma2", pa.float64()),  # utility variance on the same scale
        pa.field("mu_lo", pa.float64()),  # bootstrap interval for mu
        pa.field("mu_hi", pa.float64()),
    ]
)

FITS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("fit_id", pa.string(), nullable=False),
        pa.field("estimator", pa.string(), nullable=False),
        pa.field("n_pairs", pa.int64()),
        pa.field("n_rows", pa.int64()),
        pa.field("train_accuracy", pa.float64()),
        pa.field("train_log_loss", pa.float64()),
        pa.field("holdout_accuracy", pa.float64()),
        pa.field("holdout_log_loss", pa.float64()),
        pa.field("order_consistency", pa.float64()),
        pa.field("iterations", pa.int64()),
        pa.field("converged", pa.bool_()),
        pa.field("seconds", pa.float64()),
        pa.field("position_bias", pa.float64()),  # fitted first-position shift beta, if any
        pa.field("position_bias_lo", pa.float64()),
        pa.field("position_bias_hi", pa.float64()),
        pa.field("created_at", _TS),
        pa.field("seconds_point", pa.float64()),  # point fit (statistics → estimates)
        pa.field("seconds_interval", pa.float64()),  # utility and position-bias intervals
        # Bradley–Terry: P(i ≻ j) = sigmoid(bt_scale · (mu_i − mu_j)) with the stored mu; null
        # for Thurstonian fits, whose stored sigma2 already reproduces P.
        pa.field("bt_scale", pa.float64()),
        # pairs asked in both orders but answered in one: left out of order-averaged labels
        # (fits with a position term fit their answered order with β)
        pa.field("partial_pairs", pa.int64()),
        # held-out metrics per presentation, each order predicted with the fit's β (fit.holdout)
        pa.field("holdout_oriented_accuracy", pa.float64()),
        pa.field("holdout_oriented_log_loss", pa.float64()),
        # the position-only baseline: one P(first chosen) fitted on the training presentations
        pa.field("baseline_p_first", pa.float64()),
        pa.field("baseline_oriented_accuracy", pa.float64()),
        pa.field("baseline_oriented_log_loss", pa.float64()),
        # P(first-listed chosen) between two outcomes of equal utility and average noise, with
        # its interval: the position bias in noise units, calibrated under the active design
        # (docs/methods.md, "Position bias"); null without a position term
        pa.field("first_at_tie", pa.float64()),
        pa.field("first_at_tie_lo", pa.float64()),
        pa.field("first_at_tie_hi", pa.float64()),
    ]
)

ROUND_PAIRS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("outcome_i", pa.string(), nullable=False),  # lower-indexed outcome of the pair
        pa.field("outcome_j", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # design|start|acquired|holdout
    ]
)

TABLES: dict[str, pa.Schema] = {
    "outcomes": OUTCOMES,
    "comparisons": COMPARISONS,
    "utilities": UTILITIES,
    "fits": FITS,
    "round_pairs": ROUND_PAIRS,
}


def schema_for(table: str) -> pa.Schema:
    """The current schema of a table, with its name and version in the metadata."""
    try:
        schema = TABLES[table]
    except KeyError:
        raise SchemaMismatchError(
            f"unknown table {table!r}; known tables: {', '.join(sorted(TABLES))}"
        ) from None
    return schema.with_metadata(
        {"valuescope.table": table, "valuescope.schema_version": str(SCHEMA_VERSION)}
    )


def to_table(table: str, columns: Mapping[str, Any], num_rows: int | None = None) -> pa.Table:
    """Build a table of the given schema from columns (arrays, lists or scalars).

    Columns not given are filled with nulls; NaN in float columns becomes null; a column the
    schema does not know is an error (so typos do not silently vanish).

    Args:
        table: table name (``comparisons`` …).
        columns: column name → array-like of length ``num_rows`` or a scalar to broadcast.
        num_rows: row count; inferred from the first array-like column when omitted.
    """
    schema = schema_for(table)
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise SchemaMismatchError(
            f"table {table!r} has no column(s) {sorted(unknown)}; columns are {schema.names}"
        )
    if num_rows is None:
        lengths = [len(v) for v in columns.values() if not _is_scalar(v)]
        if not lengths:
            raise SchemaMismatchError(f"table {table!r}: cannot infer the row count from scalars")
        num_rows = lengths[0]
    arrays = []
    for field in schema:
        value = columns.get(field.name)
        try:
            if value is None:
                arr = pa.nulls(num_rows, field.type)
            elif _is_scalar(value):
                arr = pa.array([value] * num_rows, type=field.type)
            else:
                arr = pa.array(value, type=field.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaMismatchError(
                f"table {table!r}, column {field.name!r}: cannot convert to {field.type}: {exc}"
            ) from None
        if len(arr) != num_rows:
            raise SchemaMismatchError(
                f"table {table!r}, column {field.name!r}: {len(arr)} values for {num_rows} rows"
            )
        if not field.nullable and arr.null_count:
            raise SchemaMismatchError(
                f"table {table!r}, column {field.name!r}: {arr.null_count} null value(s) in a "
                "required column"
            )
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes)) or not hasattr(value, "__len__")


def check_schema(table: str, data: pa.Table) -> None:
    """Raise :class:`SchemaMismatchError` unless ``data`` has every column of ``table`` with the
    right type (extra columns are allowed: tables may gain columns)."""
    expected = schema_for(table)
    problems = []
    for field in expected:
        if field.name not in data.schema.names:
            problems.append(f"missing column {field.name!r}")
        elif not data.schema.field(field.name).type.equals(field.type):
            problems.append(
                f"column {field.name!r} is {data.schema.field(field.name).type}, "
                f"expected {field.type}"
            )
    if problems:
        raise SchemaMismatchError(
            f"table {table!r} (schema v{SCHEMA_VERSION}): " + "; ".join(problems)
        )
