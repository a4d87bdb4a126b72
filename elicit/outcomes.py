"""Outcome sets: load, validate and name the states of the world a model is asked about.

An outcome file is YAML, JSON, CSV or Parquet. YAML and JSON hold either a plain list of
records, a mapping with the list under ``outcomes:`` (and optional ``name`` and
``description``), or a mapping of categories to lists of texts (``{category: [texts]}``, the
layout of published outcome files), whose ids are made from the category and the text and whose
category is kept as the ``category`` attribute. A record has ``id`` (a string or an integer),
``text`` and optional ``attributes`` (a mapping); CSV and Parquet files have ``id`` and ``text``
columns, an optional ``attributes`` column of JSON objects, and every other column becomes an
attribute.

Errors name the file, the line (YAML/JSON) or row (CSV/Parquet), the field and the value at
fault. Built-in sets ship as package data and are addressed by name (``starter``). The formats
are documented in docs/outcomes.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
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


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (about ten times faster), else PyYAML's."""


def _load_tree(path: Path, name: str) -> OutcomeSet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read file: {exc}") from None
    try:
        # JSON is (for our purposes) YAML; composing keeps line numbers for error messages.
        node: Any = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)
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
    if _is_category_map(data):
        return _build(path, name, "", _category_records(path, node, data), unit="line")
    if isinstance(data, dict):
        unknown = set(data) - _SET_FIELDS
        if unknown:
            raise OutcomeSetError(
                f"outcome set {str(path)!r}: unknown top-level field(s) {sorted(unknown, key=str)}; "
                f"allowed: {sorted(_SET_FIELDS)} (or a {{category: [texts]}} file, whose every "
                "value is a list of texts)"
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


def _is_category_map(data: Any) -> bool:
    """``{category: [texts]}``: a non-empty mapping without ``outcomes:`` whose values are all
    lists (a record list under ``outcomes:`` is the other mapping form)."""
    return (
        isinstance(data, dict)
        and bool(data)
        and "outcomes" not in data
        and all(isinstance(v, list) for v in data.values())
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "outcome"


def category_id(category: str, text: str) -> str:
    """The id of an outcome given as ``{category: [texts]}``: the category's slug and a short
    hash of the text (whitespace-normalised), so ids stay the same whatever the order of the
    categories and texts, and change only when the text does."""
    digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:8]
    return f"{_slug(category)}-{digest}"


def _category_records(path: Path, node: Any, data: dict[Any, list[Any]]) -> list[tuple[int, Any]]:
    if len(node.value) != len(data):
        keys = [k.value for k, _ in node.value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: category {twice[0] if twice else '?'!r} appears twice; "
            "merge its lists"
        )
    rows: list[tuple[int, Any]] = []
    seen: dict[str, int] = {}
    for (name, category), (_key_node, value_node) in zip(data.items(), node.value, strict=True):
        for item, item_node in zip(category, value_node.value, strict=True):
            line = item_node.start_mark.line + 1
            if not isinstance(item, str):
                raise OutcomeSetError(
                    f"outcome set {str(path)!r} line {line}: category {str(name)!r} holds "
                    f"{item!r} ({type(item).__name__}); a {{category: [texts]}} file lists only "
                    "texts (quote it, or use records with id and text)"
                )
            outcome_id = category_id(str(name), item)
            if outcome_id in seen:
                raise OutcomeSetError(
                    f"outcome set {str(path)!r} lines {seen[outcome_id]} and {line}: category "
                    f"{str(name)!r} lists the same text twice ({_short(item)}); remove one"
                )
            seen[outcome_id] = line
            record = {"id": outcome_id, "text": item, "attributes": {"category": str(name)}}
            rows.append((line, record))
    return rows


# --- tables ------------------------------------------------------------------------------------


def _load_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = [(reader.line_num, fields) for fields in reader if fields]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read CSV: {exc}") from None
    _check_columns(path, header)
    records = []
    for line, fields in rows:
        if len(fields) != len(header):
            raise OutcomeSetError(
                f"outcome set {str(path)!r} row {line}: {len(fields)} fields but the header has "
                f"{len(header)} ({', '.join(header)}); quote a field that holds a comma"
            )
        records.append(
            (line, _split_attributes(path, line, dict(zip(header, fields, strict=True))))
        )
    return records


def _load_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise OutcomeSetError(f"outcome set {str(path)!r}: cannot read Parquet: {exc}") from None
    _check_columns(path, table.column_names)
    return [(i + 1, _split_attributes(path, i + 1, row)) for i, row in enumerate(table.to_pylist())]


def _check_columns(path: Path, header: Sequence[str]) -> None:
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise OutcomeSetError(
            f"outcome set {str(path)!r}: missing column(s) {missing}; columns found: {list(header)}"
        )


def _split_attributes(path: Path, row_no: int, row: dict[str, Any]) -> dict[str, Any]:
    at = f"outcome set {str(path)!r} row {row_no}, field 'attributes'"
    attributes = row.pop("attributes", None)
    if isinstance(attributes, str) and attributes.strip():
        try:
            attributes = json.loads(attributes)
        except json.JSONDecodeError as exc:
            raise OutcomeSetError(
                f"{at}: {_short(attributes)} is not valid JSON ({exc.msg}); write a JSON object "
                'such as {"category": "health"}, or leave the cell empty'
            ) from None
    elif isinstance(attributes, list) and all(isinstance(p, tuple) for p in attributes):
        attributes = dict(attributes)  # a Parquet map column
    if attributes in (None, ""):
        attributes = {}
    if not isinstance(attributes, dict):
        raise OutcomeSetError(
            f"{at}: {_short(attributes)} is a {type(attributes).__name__}, not a JSON object; "
            'write it as {"name": value, ...}, or give each attribute its own column'
        )
    extra = {k: v for k, v in row.items() if k not in ("id", "text") and v not in (None, "")}
    record = {"id": row.get("id"), "text": row.get("text")}
    merged = {**attributes, **extra}
    if merged:
        record["attributes"] = merged
    return record


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = repr(text if len(text) <= limit else text[: limit - 1] + "…")
    return text


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
                f"{at}: unknown field(s) {sorted(unknown, key=str)}; a record has id, text and optional "
                "attributes (put extra data under attributes)"
            )
        raw_id = record.get("id")
        if raw_id is None or str(raw_id).strip() == "":
            raise OutcomeSetError(f"{at}: missing or empty id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            shown = json.dumps(raw_id, default=str)
            fix = (
                "quote it in the file so it reads as text"
                if unit == "line"
                else "use a column of strings or integers"
            )
            raise OutcomeSetError(
                f"{at}, field 'id': {shown} is a {type(raw_id).__name__}, not a string or an "
                f"integer; {fix}"
            )
        outcome_id = str(raw_id).strip()
        text = record.get("text")
        if text is not None and not isinstance(text, str):
            raise OutcomeSetError(
                f"{at}, field 'text': outcome {outcome_id!r} has a {type(text).__name__} "
                f"({json.dumps(text, default=str)}), not a text; quote it"
            )
        if text is None or not text.strip():
            raise OutcomeSetError(f"{at}: outcome {outcome_id!r} has empty text")
        attributes = record.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise OutcomeSetError(
                f"{at}: attributes of {outcome_id!r} must be a mapping, got {type(attributes).__name__}"
            )
        odd = [k for k in attributes if not isinstance(k, str) or not k]
        if odd:
            raise OutcomeSetError(
                f"{at}, field 'attributes': outcome {outcome_id!r} has the attribute name "
                f"{json.dumps(odd[0], default=str)}; attribute names must be non-empty texts "
                "(name the column, or quote the key)"
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
