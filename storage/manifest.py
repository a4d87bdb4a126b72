"""Run manifests: what was run, with which code, and how far it got.

``<root>/runs/<run_id>/manifest.json`` holds the resolved spec, its hash, the package versions,
the git revision when the code runs from a checkout, and a status per round. The part files
remain the source of truth for which shards are done (a part exists only when complete); the
manifest records progress for people and for ``runs`` in SQL. Only the run driver writes it,
atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.errors import ManifestError, StorageError
from storage.fs import Root
from storage.layout import RunLayout

RunStatus = Literal["created", "running", "done", "failed", "interrupted"]

_PACKAGES = (
    "valuescope",
    "numpy",
    "scipy",
    "pyarrow",
    "duckdb",
    "polars",
    "pydantic",
    "ray",
    "torch",
    "transformers",
    "vllm",
)


class RoundStatus(BaseModel):
    """Progress of one round of one model."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str
    """Model name."""
    round: int
    """Round number (0 for a single-round design)."""
    shards_total: int = 0
    """Shards the round was cut into."""
    shards_done: int = 0
    """Shards whose part file exists."""
    prompts: int = 0
    """Oriented prompts in the round."""
    shard_size: int | None = None
    """Prompts per shard the round was cut into, fixed when it first starts: a rerun with
    another shard size resumes the same shards. Null in manifests written before it was kept."""
    errors: int = 0
    """Rows with an error recorded."""
    status: RunStatus = "created"
    """State of the round."""


class Manifest(BaseModel):
    """The manifest of one run."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_id: str
    """Run identifier (folder name and the ``run_id`` column)."""
    created_at: str
    """ISO-8601 UTC time the run was first started."""
    updated_at: str
    """ISO-8601 UTC time of the last update."""
    spec: dict[str, Any]
    """The resolved spec (every default filled in; no secrets: keys are named, not stored)."""
    spec_hash: str
    """SHA-256 of the canonical JSON of the spec's content fields."""
    versions: dict[str, str] = Field(default_factory=dict)
    """Versions of valuescope and the libraries that shape results."""
    git_revision: str | None = None
    """Git commit of the valuescope checkout, when it runs from one."""
    simulated: bool = False
    """True when the answers come from the simulated scorer rather than a model."""
    status: RunStatus = "created"
    """State of the whole run."""
    rounds: list[RoundStatus] = Field(default_factory=list)
    """Progress per model and round."""
    message: str | None = None
    """Why the run failed or stopped, when it did."""

    def round_status(self, model: str, round_: int) -> RoundStatus:
        """The entry for a model's round, created on first use."""
        for entry in self.rounds:
            if entry.model == model and entry.round == round_:
                return entry
        entry = RoundStatus(model=model, round=round_)
        self.rounds.append(entry)
        return entry


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def spec_hash(spec: dict[str, Any]) -> str:
    """Stable hash of a resolved spec (canonical JSON, sorted keys)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (missing ones left out)."""
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_revision() -> str | None:
    """The git commit of the valuescope source tree, or None outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_manifest(run_id: str, spec: dict[str, Any], *, simulated: bool = False) -> Manifest:
    """A fresh manifest for a run that is about to start."""
    stamp = now_iso()
    return Manifest(
        run_id=run_id,
        created_at=stamp,
        updated_at=stamp,
        spec=spec,
        spec_hash=spec_hash(spec),
        versions=package_versions(),
        git_revision=git_revision(),
        simulated=simulated,
    )


def read_manifest(layout: RunLayout) -> Manifest | None:
    """The run's manifest, or None when the run does not exist yet."""
    try:
        raw = layout.root.read_bytes(layout.manifest)
    except FileNotFoundError:
        return None
    try:
        return shown(layout, Manifest.model_validate_json(raw))
    except ValidationError as exc:
        raise ManifestError(
            f"manifest {layout.root.display(layout.manifest)!r} is not a valid manifest "
            f"({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}); "
            "it was written by another tool or an incompatible valuescope version"
        ) from None


def shown(layout: RunLayout, manifest: Manifest) -> Manifest:
    """The manifest as it should be read: ``running`` with no live writer (its command was
    killed, or its machine lost) is ``interrupted`` (see :mod:`storage.runlock`)."""
    from storage.runlock import writer_alive

    if manifest.status == "running" and not writer_alive(layout):
        manifest.status = "interrupted"
        manifest.message = manifest.message or (
            "the command writing this run is gone (killed, or its machine lost); run it again "
            "to resume"
        )
    return manifest


def write_manifest(layout: RunLayout, manifest: Manifest) -> None:
    """Write the manifest atomically (updated_at is set to now)."""
    manifest.updated_at = now_iso()
    layout.root.write_atomic(layout.manifest, manifest.model_dump_json(indent=2).encode())


def list_manifests(root: Root) -> list[Manifest]:
    """Every readable manifest under the root, oldest first."""
    paths = [p for p in root.list_files(root.path("runs"), "manifest.json")]
    found = []
    for path in paths:
        try:
            manifest = Manifest.model_validate_json(root.read_bytes(path))
            found.append(shown(RunLayout(root, manifest.run_id), manifest))
        except (ValidationError, FileNotFoundError, StorageError):
            continue
    return sorted(found, key=lambda m: m.created_at)
