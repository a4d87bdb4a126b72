"""Outcome sets: load, validate and name the states of the world a model is asked about.

An outcome file is YAML, JSON, CSV or Parquet. YAML and JSON hold either a plain list of
records or a mapping with the list under ``outcomes:`` (and optional ``name`` and
``description``). A record has ``id``, ``text`` and optional ``attributes`` (a mapping); CSV and
Parquet files have ``id`` and ``text`` columns, and every other column becomes an attribute.

Errors name the file and the line (YAML/JSON) or row (CSV/Parquet) at fault. Built-in sets ship
as package data and are addressed by name (``starter``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from elicit.errors import OutcomeSetError

_RECORD_FIELDS = {"id", "text", "attributes"}
_SET_FIELDS = {"name", "description", "outcomes"}
_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Outcome:
    """One state of the world."""

    id: str
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutcomeSet:
    """An ordered, validated collection of outcomes with unique ids."""

    name: str
    outcomes: tuple[Outcome, ...]
    description: str = ""
    source: str = ""

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    @property
    def ids(self) -> list[str]:
        return [o.id for o in self.outcomes]

    @property
    def texts(self) -> list[str]:
        return [o.text for o in self.outcomes]

    def index(self) -> dict[str, int]:
        """Outcome id → position."""
        return {o.id: i for i, o in enumerate(self.outcomes)}


def builtin_sets() -> list[str]:
    """Names of the outcome sets shipped with valuescope."""
    folder = resources.files("elicit") / "data" / "outcomes"
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_source(source: str | Path) -> Path:
    """A file path for an outcome source: a path, or the name of a built-in set."""
    path = Path(source).expanduser()
    if path.suffix.lower() in _SUFFIXES or path.exists():
        return path
    builtin = resources.files("elicit") / "data" / "outcomes" / f"{source}.yaml"
    if builtin.is_file():
        return Path(str(builtin))
    raise OutcomeSetError(
        f"outcome set {str(source)!r}: no such file and no built-in set of that name; "
        f"built-in sets: {', '.join(builtin_sets())}; files may be .yaml, .json, .csv or .parquet"
    )


def load_outcomes(source: str | Path) -> OutcomeSet:
    """Load and validate an outcome set from a file or a built-in name.

    Raises:
        OutcomeSetError: unreadable file, unknown fields, empty text, duplicate ids, empty set.
    """
    path = resolve_source(source)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: unknown file type {path.suffix!r}; "
            "use .yaml, .yml, .json, .csv or .parquet"
        )
    if not path.is_file():
        raise OutcomeSetError(f"outcome set {str(path)!r}: file not found")
    name = path.name.rsplit(".", 1)[0]
    if kind in ("yaml", "json"):
        return _load_tree(path, name)
    rows = _load_csv(path) if kind == "csv" else _load_parquet(path)
    return _build(path, name, "", rows, unit="row")


# --- YAML / JSON -------------------------------------------------------------------------------


def _load_tree(path: Path, name: str) -> OutcomeSet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read file: {exc}") from None
    try:
        # JSON is (for our purposes) YAML; composing keeps line numbers for error messages.
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise OutcomeSetError(
            f"outcome set {str(path)!r}{where}: not valid YAML/JSON: {problem}"
        ) from None
    description = ""
    records_node = node
    records = data
    if isinstance(data, dict):
        unknown = set(data) - _SET_FIELDS
        if unknown:
            raise OutcomeSetError(
                f"outcome set {str(path)!r}: unknown top-level field(s) {sorted(unknown)}; "
                f"allowed: {sorted(_SET_FIELDS)}"
            )
        if "outcomes" not in data:
            raise OutcomeSetError(f"outcome set {str(path)!r}: no 'outcomes:' list found")
        name = str(data.get("name") or name)
        description = str(data.get("description") or "")
        records = data["outcomes"]
        records_node = next(v for k, v in node.value if k.value == "outcomes")
    if not isinstance(records, list):
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: expected a list of {{id, text, attributes}} records, "
            f"got {type(records).__name__}"
        )
    lines = [item.start_mark.line + 1 for item in records_node.value] if records else []
    return _build(path, name, description, list(zip(lines, records, strict=True)), unit="line")


# --- tables ------------------------------------------------------------------------------------


def _load_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [(i + 2, dict(row)) for i, row in enumerate(reader)]  # line 1 is the header
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read CSV: {exc}") from None
    _check_columns(path, header)
    return [(line, _split_attributes(row)) for line, row in rows]


def _load_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read Parquet: {exc}") from None
    _check_columns(path, table.column_names)
    return [(i + 1, _split_attributes(row)) for i, row in enumerate(table.to_pylist())]


def _check_columns(path: Path, header: Sequence[str]) -> None:
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: missing column(s) {missing}; columns found: {list(header)}"
        )


def _split_attributes(row: dict[str, Any]) -> dict[str, Any]:
    attributes = row.pop("attributes", None)
    if isinstance(attributes, str) and attributes.strip():
        attributes = json.loads(attributes)
    extra = {k: v for k, v in row.items() if k not in ("id", "text") and v not in (None, "")}
    record = {"id": row.get("id"), "text": row.get("text")}
    merged = {**(attributes or {}), **extra}
    if merged:
        record["attributes"] = merged
    return record


# --- validation --------------------------------------------------------------------------------


def _build(
    path: Path, name: str, description: str, rows: list[tuple[int, Any]], *, unit: str
) -> OutcomeSet:
    if not rows:
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: the set is empty; add at least two outcomes"
        )
    outcomes: list[Outcome] = []
    seen: dict[str, int] = {}
    for where, record in rows:
        at = f"outcome set {str(path)!r} {unit} {where}"
        if not isinstance(record, dict):
            raise OutcomeSetError(f"{at}: expected a record with id and text, got {record!r}")
        unknown = set(record) - _RECORD_FIELDS
        if unknown:
            raise OutcomeSetError(
                f"{at}: unknown field(s) {sorted(unknown)}; a record has id, text and optional "
                "attributes (put extra data under attributes)"
            )
        raw_id = record.get("id")
        if raw_id is None or str(raw_id).strip() == "":
            raise OutcomeSetError(f"{at}: missing or empty id")
        outcome_id = str(raw_id).strip()
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise OutcomeSetError(f"{at}: outcome {outcome_id!r} has empty text")
        attributes = record.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise OutcomeSetError(
                f"{at}: attributes of {outcome_id!r} must be a mapping, got {type(attributes).__name__}"
            )
        if outcome_id in seen:
            raise OutcomeSetError(
                f"outcome set {str(path)!r}: duplicate id {outcome_id!r} ({unit}s {seen[outcome_id]} "
                f"and {where}); ids must be unique"
            )
        seen[outcome_id] = where
        outcomes.append(Outcome(outcome_id, " ".join(text.split()), dict(attributes)))
    if len(outcomes) < 2:
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: only {len(outcomes)} outcome; a comparison needs at least two"
        )
    return OutcomeSet(
        name=name, outcomes=tuple(outcomes), description=description, source=str(path)
    )


def combine(sets: Sequence[OutcomeSet]) -> OutcomeSet:
    """Concatenate outcome sets (ids must stay unique across them); records which set each
    outcome came from in the ``set`` attribute."""
    if len(sets) == 1:
        return sets[0]
    seen: dict[str, str] = {}
    merged: list[Outcome] = []
    for s in sets:
        for o in s:
            if o.id in seen:
                raise OutcomeSetError(
                    f"outcome id {o.id!r} appears in both {seen[o.id]!r} and {s.name!r}; "
                    "ids must be unique across the sets of a run"
                )
            seen[o.id] = s.name
            merged.append(Outcome(o.id, o.text, {**o.attributes, "set": s.name}))
    return OutcomeSet(name="+".join(s.name for s in sets), outcomes=tuple(merged))
