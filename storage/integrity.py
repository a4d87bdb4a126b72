"""Files that prove they are whole: commit records, verification, and the repair of a damaged file.

Every Parquet file written through :mod:`storage.writer` gets a *commit record* next to it,
``<file>.commit``: one line of JSON, ``{"rows": N, "bytes": B}``, written right after the file
itself. The record lives outside the file on purpose: a truncated or overwritten file cannot
vouch for itself, and the byte count lets a listing (which reports sizes) catch a truncated
file. The name does not end in ``.parquet``, so no table glob and no listing of parts sees it.

A file is *whole* when its Parquet footer reads and, where a record exists, its size and row
count are the ones recorded. A file without a record is accepted on its footer alone: parts are
written atomically, so the only ways to lack a record are a crash between the two writes (the
part is complete) or a root written before records existed.

:func:`verify_part` checks one file; :meth:`storage.layout.RunLayout.check_shards` lists a round's
shards and counts only whole parts as done, so a resumed run recomputes a damaged shard;
:func:`corrupt_error` turns a problem into the one-line error the catalog raises, naming the file
and the command that repairs it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import CorruptFileError
from storage.fs import Root

RECORD_SUFFIX = ".commit"
SET_ASIDE_SUFFIX = ".corrupt"
_PARALLEL_READS = 8


@dataclass(frozen=True)
class CommitRecord:
    """What a file held when it was committed."""

    rows: int
    bytes: int


def record_path(path: str) -> str:
    """Where the commit record of ``path`` lives."""
    return path + RECORD_SUFFIX


def write_record(root: Root, path: str, rows: int, nbytes: int) -> None:
    """Record the row count and size of a file that was just written."""
    blob = json.dumps({"rows": int(rows), "bytes": int(nbytes)}, separators=(",", ":"))
    root.write_atomic(record_path(path), blob.encode())


def read_record(root: Root, path: str) -> CommitRecord | str | None:
    """The commit record of ``path``: the record, None when there is none, or a problem."""
    try:
        raw = root.read_bytes(record_path(path))
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        return CommitRecord(rows=int(data["rows"]), bytes=int(data["bytes"]))
    except (ValueError, KeyError, TypeError):
        return f"its commit record {record_path(path).rsplit('/', 1)[1]!r} is unreadable"


def _footer_problem(root: Root, path: str) -> tuple[int | None, str | None]:
    """(rows in the footer, None) or (None, what is wrong with the footer)."""
    try:
        meta = pq.read_metadata(path, filesystem=root.fs)
    except FileNotFoundError:
        return None, "the file is missing"
    except pa.ArrowInvalid as exc:
        return None, f"no readable Parquet footer ({_first_line(exc)}): truncated or not Parquet"
    except OSError as exc:
        text = str(exc)
        if "thrift" in text.lower() or "parquet" in text.lower():
            return None, f"its Parquet footer is damaged ({_first_line(exc)})"
        raise root._guard("read", path, exc) from None
    return int(meta.num_rows), None


def verify_part(
    root: Root, path: str, *, size: int | None = None, has_record: bool | None = None
) -> str | None:
    """What is wrong with a committed file, or None when it is whole.

    Checks that the footer reads and that the size and row count match the commit record.
    ``size`` and ``has_record`` may come from a directory listing (saves one request each on
    an object store).

    Raises:
        RootUnreachableError: the root cannot be read at all (that is not a damaged file).
    """
    if size is None:
        info = root.fs.get_file_info(path)
        if info.size is None:
            return "the file is missing"
        size = int(info.size)
    record = read_record(root, path) if has_record is not False else None
    if isinstance(record, str):
        return record
    if record is not None and record.bytes != size:
        return (
            f"it is {size} bytes but was committed with {record.bytes} bytes "
            "(truncated or overwritten)"
        )
    rows, problem = _footer_problem(root, path)
    if problem is not None:
        return problem
    if record is not None and rows != record.rows:
        return f"it holds {rows} rows but was committed with {record.rows}"
    return None


def verify_files(
    root: Root, sizes: dict[str, int], records: set[str] | None = None
) -> dict[str, str]:
    """Problems of many files at once (path → problem; whole files are left out).

    ``sizes`` maps each file to its listed size. ``records`` is the set of commit records the
    same listing found (saves a request per file without one); None looks each one up.
    """

    def one(path: str) -> tuple[str, str | None]:
        known = None if records is None else record_path(path) in records
        return path, verify_part(root, path, size=sizes[path], has_record=known)

    if root.is_local or len(sizes) < 2:
        results = [one(p) for p in sizes]
    else:
        with ThreadPoolExecutor(max_workers=_PARALLEL_READS) as pool:
            results = list(pool.map(one, sizes))
    return {path: problem for path, problem in results if problem is not None}


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


_PART = re.compile(r"run_id=([^/]+)/model=([^/]+)/round=(\d+)/part-(\d+)\.parquet$")


def repair_hint(root: Root, path: str) -> str:
    """The command that repairs a damaged file, by what the file is."""
    rel = path[len(root.base) + 1 :] if path.startswith(root.base + "/") else path
    top = rel.split("/", 1)[0]
    run = re.search(r"run_id=([^/]+)", rel)
    run_id = run.group(1) if run else (rel.split("/")[1] if top == "runs" and "/" in rel else "")
    part = _PART.search(rel)
    if top == "comparisons" and part:
        return (
            f"rerun `valuescope elicit SPEC` with the spec of run {part.group(1)!r}: resume checks "
            f"every part and recomputes shard {int(part.group(4))} of round {int(part.group(3))}"
        )
    aside = f"rename it to end in {SET_ASIDE_SUFFIX!r} (storage.integrity.set_aside), then "
    if top in ("utilities", "fits"):
        return aside + f"rerun `valuescope fit {run_id}`"
    if top == "analyses":
        name = rel.split("/")[1] if rel.count("/") >= 1 else "NAME"
        return aside + f"rerun `valuescope analyze {name} {run_id}`"
    if top in ("runs", "round_pairs"):
        return aside + f"rerun `valuescope elicit SPEC` with the spec of run {run_id!r}"
    return aside + "rerun the command that wrote it"


def corrupt_error(root: Root, path: str, problem: str, *, others: int = 0) -> CorruptFileError:
    """The one-line error for a damaged file: which file, what is wrong, how to repair it."""
    shown = root.display(path)
    repair = repair_hint(root, path)
    more = f" (and {others} more damaged file{'s' if others != 1 else ''})" if others else ""
    return CorruptFileError(
        f"damaged Parquet file {shown!r}{more}: {problem}; repair: {repair}",
        path=shown,
        problem=problem,
        repair=repair,
    )


def set_aside(root: Root, path: str) -> str:
    """Move a damaged file out of every table (``<file>.corrupt``) and drop its commit record;
    returns the new path. Reruns then see the file as never written."""
    target = path + SET_ASIDE_SUFFIX
    try:
        root.fs.move(path, target)
    except OSError as exc:
        raise root._guard("move", path, exc) from None
    root.delete(record_path(path))
    return target
