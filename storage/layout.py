"""Every file name and folder of a results root, in one place.

::

    <root>/runs/<run_id>/manifest.json
    <root>/runs/<run_id>/outcomes.parquet
    <root>/comparisons/run_id=<run>/model=<model>/round=<NNNN>/part-<NNNNN>.parquet
    <root>/comparisons/…/part-<NNNNN>.parquet.commit   (its commit record: rows, bytes)
    <root>/utilities/run_id=<run>/model=<model>/fit-<fit_id>.parquet
    <root>/fits/run_id=<run>/model=<model>/fit-<fit_id>.parquet
    <root>/round_pairs/run_id=<run>/model=<model>/round-<NNNN>.parquet
    <root>/analyses/<analysis>/run_id=<run>/model=<model>/<table>.parquet   (result, details)
    <root>/figures/run_id=<run>/model=<model>/<analysis>.png
    <root>/runs/<run_id>/hidden/model=<model>/<context>/layer=<LLL>.parquet   (probe cache)

Folder names are hive-style for people and for pruning by glob; every file also holds its
``run_id``, ``model`` (and ``round``) columns, so a file read on its own is self-describing.
Model names such as ``meta-llama/Llama-3.1-8B`` are made path-safe with :func:`model_key`;
:func:`check_keys` refuses two names that would share a folder. Every file written through
:mod:`storage.writer` has a commit record beside it (:mod:`storage.integrity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from storage.errors import NameCollisionError, StorageError
from storage.fs import Root
from storage.integrity import RECORD_SUFFIX, verify_files

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_run_id(run_id: str) -> str:
    """Validate a run id (letters, digits, '.', '_', '-'; at most 128 characters)."""
    if not _RUN_ID.match(run_id):
        raise StorageError(
            f"run id {run_id!r} is not allowed; use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, not starting with a punctuation mark)"
        )
    return run_id


def model_key(model: str) -> str:
    """A path-safe, readable key for a model name ('/' becomes '--')."""
    key = _UNSAFE.sub("_", model.replace("/", "--")).strip("._")
    if not key:
        raise StorageError(f"model name {model!r} has no usable characters")
    return key


def check_keys(names: Iterable[str], kind: Literal["model", "run"] = "model") -> None:
    """Refuse names that would share a folder under the root.

    Models are stored under :func:`model_key` (so ``"sim a"`` and ``"sim_a"``, or ``"a/b"`` and
    ``"a--b"``, would write into one folder and the second would find the first's shards
    done); runs under their id. Keys that differ only in case collide too, because a
    case-insensitive disk (macOS, Windows) folds them into one folder.

    Raises:
        NameCollisionError: one line naming both colliding names and their key.
        StorageError: a name with no usable characters (model) or a malformed run id.
    """
    seen: dict[str, str] = {}
    for name in names:
        key = model_key(name) if kind == "model" else check_run_id(name)
        folded = key.casefold()
        if folded in seen:
            other = seen[folded]
            if other == name:
                raise NameCollisionError(f"{kind} {name!r} is listed twice; list each {kind} once")
            raise NameCollisionError(
                f"{kind}s {other!r} and {name!r} would be stored in the same folder "
                f"({kind}={key}); rename one of them"
            )
        seen[folded] = name


@dataclass(frozen=True)
class ShardCheck:
    """The part files of one round: which shards are done, which are damaged."""

    done: set[int] = field(default_factory=set)
    """Shards whose part is whole (footer reads, size and rows as committed)."""
    damaged: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Shard → (file, what is wrong): to be recomputed, their part overwritten."""


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run under a results root."""

    root: Root
    run_id: str

    def __post_init__(self) -> None:
        check_run_id(self.run_id)

    @property
    def run_dir(self) -> str:
        return self.root.path("runs", self.run_id)

    @property
    def manifest(self) -> str:
        return self.root.path("runs", self.run_id, "manifest.json")

    @property
    def outcomes(self) -> str:
        return self.root.path("runs", self.run_id, "outcomes.parquet")

    def comparisons_dir(self, model: str, round_: int | None = None) -> str:
        parts = ["comparisons", f"run_id={self.run_id}", f"model={model_key(model)}"]
        if round_ is not None:
            parts.append(f"round={round_:04d}")
        return self.root.path(*parts)

    def part(self, model: str, round_: int, shard: int) -> str:
        return f"{self.comparisons_dir(model, round_)}/part-{shard:05d}.parquet"

    def utilities(self, model: str, fit_id: str) -> str:
        return self.root.path(
            "utilities",
            f"run_id={self.run_id}",
            f"model={model_key(model)}",
            f"fit-{fit_id}.parquet",
        )

    def fits(self, model: str, fit_id: str) -> str:
        return self.root.path(
            "fits", f"run_id={self.run_id}", f"model={model_key(model)}", f"fit-{fit_id}.parquet"
        )

    def round_pairs(self, model: str, round_: int) -> str:
        """The pairs chosen for a round (written before the round is asked, so a resumed run
        asks exactly the same pairs)."""
        return self.root.path(
            "round_pairs",
            f"run_id={self.run_id}",
            f"model={model_key(model)}",
            f"round-{round_:04d}.parquet",
        )

    def table_file(self, table: str, model: str, name: str) -> str:
        """A per-model results file of an analysis table (``<root>/<table>/run_id=…/model=…/``)."""
        return self.root.path(
            table, f"run_id={self.run_id}", f"model={model_key(model)}", f"{name}.parquet"
        )

    def inputs(self, name: str) -> str:
        """A generated input of the run (outcome set, pair list), kept so the run is
        reproducible: ``<root>/runs/<run_id>/inputs/<name>``."""
        return self.root.path("runs", self.run_id, "inputs", name)

    def analysis(self, analysis: str, model: str, table: str = "result") -> str:
        """A table written by an analysis (``result`` is its one-row headline table)."""
        return self.root.path(
            "analyses",
            analysis,
            f"run_id={self.run_id}",
            f"model={model_key(model)}",
            f"{table}.parquet",
        )

    def figure(self, model: str, name: str) -> str:
        """A PNG figure of an analysis of this run."""
        return self.root.path(
            "figures", f"run_id={self.run_id}", f"model={model_key(model)}", f"{name}.png"
        )

    def hidden_dir(self, model: str, context: str) -> str:
        """Cached hidden states of one model of the run, for one input context (``prompt``,
        ``raw``): ``<root>/runs/<run_id>/hidden/model=<model>/<context>/``."""
        return self.root.path(
            "runs", self.run_id, "hidden", f"model={model_key(model)}", model_key(context)
        )

    def hidden_layer(self, model: str, context: str, layer: int) -> str:
        """One layer's cached vectors (one row per outcome); layer 0 = the embeddings."""
        return f"{self.hidden_dir(model, context)}/layer={layer:03d}.parquet"

    def check_shards(self, model: str, round_: int) -> ShardCheck:
        """Every part of a round, verified (one listing, then each footer and commit record).

        Raises:
            RootUnreachableError: the root cannot be listed or read.
        """
        listing = self.root.file_sizes(self.comparisons_dir(model, round_))
        records = {p for p in listing if p.endswith(RECORD_SUFFIX)}
        parts: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for path, size in listing.items():
            match = re.fullmatch(r"part-(\d+)\.parquet", path.rsplit("/", 1)[1])
            if match:
                parts[path] = int(match.group(1))
                sizes[path] = size
        problems = verify_files(self.root, sizes, records)
        check = ShardCheck()
        for path, shard in parts.items():
            if path in problems:
                check.damaged[shard] = (self.root.display(path), problems[path])
            else:
                check.done.add(shard)
        return check

    def done_shards(self, model: str, round_: int) -> set[int]:
        """Shards of a round whose part file is whole (see :meth:`check_shards`); a damaged
        part does not count, so a resumed run recomputes and overwrites it."""
        return self.check_shards(model, round_).done


def table_glob(root: Root, table: str) -> str:
    """Glob over every file of a table (the catalog's view source)."""
    if table == "outcomes":
        return root.path("runs", "*", "outcomes.parquet")
    if table == "comparisons":
        return root.path("comparisons", "*", "*", "*", "*.parquet")
    return root.path(table, "*", "*", "*.parquet")
