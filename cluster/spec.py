"""Run specs: the YAML file that says what to ask which model and how to fit it.

A spec is validated by pydantic with ``extra="forbid"`` and a docstring per field; errors name
the file, the line, the field path, the bad value and what is allowed, before any model is
loaded. ``valuescope validate SPEC`` prints the resolved spec and ``--schema`` the JSON Schema.

Example::

    run_id: smollm2-starter
    root: results
    outcomes: [starter]
    models:
      - name: smollm2-135m
    mode: {kind: logprob}
    design: {kind: active, per_round: 200}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cluster.errors import SpecError
from elicit.config import ModeConfig, ModelConfig, PromptConfig


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class HoldoutConfig(_Spec):
    """The held-out pair set, fixed before anything is asked."""

    size: int | None = Field(None, ge=0)
    """Held-out unordered pairs; null = min(5 % of all pairs, 1000). 0 disables it."""
    seed: int = 0
    """Seed of the held-out draw."""


class DesignConfig(_Spec):
    """Which pairs are asked."""

    kind: Literal["full", "pairs", "active"] = "active"
    """`full`: every unordered pair. `pairs`: the pairs listed in `pairs_file`. `active`: rounds of
    fit → acquire → elicit until the budget is spent."""
    pairs_file: str | None = None
    """CSV/Parquet with columns `outcome_a`, `outcome_b` (design `pairs`)."""
    holdout: HoldoutConfig = HoldoutConfig()
    """Held-out pairs for honest accuracy (never trained on or acquired)."""
    budget: int | None = Field(None, ge=1)
    """Unordered pairs to ask in total (active); null = floor(2·N·log2 N), capped at all pairs."""
    per_round: int = Field(500, ge=1)
    """Pairs added per active-learning round."""
    acquisition: Literal["reference", "information"] = "information"
    """`reference`: the published procedure (small |Δμ| and low degree). `information`: uses
    the fitted means and variances to pick the pairs whose answers most reduce the summed
    variance of the utilities (Fisher information)."""
    pseudo_labels: bool = False
    """Label unqueried pairs predicted at ≥ 0.95 for one final refit (kept out of metrics)."""
    seed: int = 0
    """Seed of the start graph and random fill."""

    @model_validator(mode="after")
    def _pairs_file(self) -> DesignConfig:
        if self.kind == "pairs" and not self.pairs_file:
            raise ValueError(
                "design kind 'pairs' needs pairs_file (CSV or Parquet with outcome_a, outcome_b)"
            )
        if self.kind != "pairs" and self.pairs_file:
            raise ValueError(f"pairs_file is only used with design kind 'pairs', not {self.kind!r}")
        return self


class FitConfig(_Spec):
    """How utilities are estimated."""

    estimator: Literal["thurstonian", "bt"] = "thurstonian"
    """`thurstonian` (μ and σ² per outcome, the paper's model) or `bt` (Bradley–Terry)."""
    position_bias: bool = True
    """Fit a first-position bias term β on oriented rows, so a biased model's remaining
    preference signal is recovered; β and its interval are reported."""
    bootstrap: int = Field(50, ge=0, le=10000)
    """0 = no intervals of μ; any other value: 95 % intervals from the curvature of the
    likelihood (sandwich, clustered by pair; docs/methods.md). The count is no longer used —
    the field keeps its name so stored specs keep their run ids."""
    seed: int = 0
    """Seed of the fit's random choices (kept for stored specs; the analytic fit uses none)."""


class ExecutionConfig(_Spec):
    """Where and how the work runs."""

    ray_address: str | None = None
    """Ray cluster to join (e.g. `auto` or `ray://head:10001`); null starts a local Ray."""
    shard_size: int | None = Field(None, ge=1, le=1_000_000)
    """Oriented prompts per shard (the unit of work, retry and resume). Null = by round: about
    4 shards per replica, at least 64 and at most 2,048 prompts each, so that a small round
    keeps every replica busy and its progress moves. A round keeps the size it started with."""
    max_shard_retries: int = Field(3, ge=0)
    """Times a shard is retried after its replica died before the run fails."""
    num_cpus_per_replica: float = Field(1.0, gt=0)
    """CPUs each replica actor reserves."""
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    """Progress display: rich bars on a terminal, plain lines in pods and CI."""


class RunSpec(_Spec):
    """A valuescope run."""

    run_id: str | None = None
    """Run identifier; null = `<name>-<first 8 characters of the spec hash>`, so rerunning the
    same spec resumes the same run."""
    name: str = "run"
    """Human-readable name; the prefix of a generated run id."""
    root: str = "results"
    """Results root: a folder or `s3://bucket/prefix`."""
    outcomes: list[str] = Field(default_factory=lambda: ["starter"])
    """Outcome sets: built-in names (`starter`) or files (.yaml, .json, .csv, .parquet)."""
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig()])
    """Models to elicit from."""
    prompt: PromptConfig = PromptConfig()
    """What each model is asked."""
    mode: ModeConfig = ModeConfig()
    """How answers are read."""
    design: DesignConfig = DesignConfig()
    """Which pairs are asked."""
    fit: FitConfig = FitConfig()
    """How utilities are estimated."""
    execution: ExecutionConfig = ExecutionConfig()
    """Where the work runs."""

    @field_validator("outcomes", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("outcomes")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one outcome set is needed (e.g. [starter])")
        return value

    @model_validator(mode="after")
    def _unique_models(self) -> RunSpec:
        if not self.models:
            raise ValueError("at least one model is needed")
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique within a run; repeated: {dupes}")
        from storage.errors import StorageError
        from storage.layout import check_keys

        try:  # two names that would share one folder (``"sim a"``/``"sim_a"``, ``"a/b"``/``"a--b"``)
            check_keys(names, "model")
        except StorageError as exc:
            raise ValueError(str(exc)) from None
        return self

    def content(self) -> dict[str, Any]:
        """The fields that decide the results (used for the spec hash)."""
        data = self.model_dump(mode="json")
        data.pop("run_id", None)
        data.pop("root", None)
        data.pop("execution", None)
        return data

    def same_content(self, stored: dict[str, Any]) -> bool:
        """Whether a run stored with spec content ``stored`` (its manifest's ``spec``) asked the
        same questions as this spec: results of two different specs never mix under one run."""
        return stored == json.loads(json.dumps(self.content()))

    def resolved_run_id(self) -> str:
        """The run id, generated from the name and spec hash when not given."""
        if self.run_id:
            return self.run_id
        from storage.manifest import spec_hash

        return f"{self.name}-{spec_hash(self.content())[:8]}"


_USERINFO = re.compile(r"//[^/@\s\"]*@")


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, as deep as it resolves."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                match = next((k for k, _ in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def format_validation_error(
    exc: ValidationError, source: str, node: yaml.Node | None = None
) -> str:
    """One readable message per problem: file, line, field path, bad value, what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "literal[")))
        )
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(node, loc)
        where = f"{source}:{line}" if line else source
        value = err.get("input")
        shown = _USERINFO.sub("//***@", json.dumps(value, default=str))  # never echo a password
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across fields: the input is the whole spec, not worth echoing
            lines.append(f"{where}: {msg}")
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `valuescope validate --schema` lists fields)"
            lines.append(f"{where}: {path}: {msg}")
        else:
            lines.append(f"{where}: {path} = {shown}: {msg}")
    return "; ".join(lines)


def parse_spec(data: Any, source: str = "<spec>", node: yaml.Node | None = None) -> RunSpec:
    """Validate an already-parsed spec mapping."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec must be a mapping of fields, got {type(data).__name__}")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid spec: {format_validation_error(exc, source, node)}") from None


def read_spec_file(path: str | Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse a spec file into its mapping and YAML node; every failure is one line.

    An empty file (or one of comments only) is refused: it would otherwise run every default,
    the whole quickstart, into ``./results``. A file that is not UTF-8 is named with the line
    and column of its first bad byte; a YAML error with its ``file:line:column``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} not found") from None
    except OSError as exc:
        raise SpecError(f"spec file {str(path)!r}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"spec file {path}:{line}:{col}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the "
            "file as UTF-8"
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise SpecError(f"spec file {path}{where}: not valid YAML: {detail}") from None
    if data is None:
        raise SpecError(
            f"spec file {path} is empty; write the fields of a run (at least models and "
            "outcomes; `valuescope validate --schema` lists them), or run `valuescope run` "
            "without a file for the quickstart"
        )
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a mapping of fields, got {type(data).__name__}")
    return data, node


def load_spec(path: str | Path) -> RunSpec:
    """Read and validate a YAML spec file."""
    data, node = read_spec_file(path)
    return parse_spec(data, str(path), node)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file."""
    return RunSpec.model_json_schema()
