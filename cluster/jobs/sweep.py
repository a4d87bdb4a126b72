"""Sweeps: one file, many models, each its own run, packed onto the cluster.

A sweep file lists models (registry names, Hugging Face ids, local folders or ``simulated``)
and the settings they share (outcomes, prompt, mode, design, fit, results root). Each model
becomes a run with run id ``<sweep name>-<key>``, so it resumes on its own: rerunning the sweep
skips models whose run is done and, inside the others, shards already written.

Scheduling is first-fit decreasing over the cluster's capacity: models are sorted by the GPUs
they hold (replicas × GPUs per replica; CPUs break ties and pack CPU-only models on a CPU-only
Ray), and a model starts as soon as it fits in what the running ones leave free. ``replicas:
auto`` takes the whole cluster, so such a model runs alone with every replica that fits.

At the end a cross-model summary is written and printed: ``sweeps`` (one row per model: status,
family, size, fit metrics) and ``sweep_similarity`` (Pearson and Spearman correlation of every
two models' utilities over their shared outcomes), both queryable with ``valuescope sql``, and a
manifest ``<root>/sweeps/sweep=<name>/sweep.json`` that lists the runs. A sweep is submitted as
a Ray Job by :func:`cluster.jobs.ray_jobs.submit_sweep`.

Example::

    name: qwen25-family
    root: s3://bucket/valuescope
    outcomes: [starter]
    design: {kind: full}
    models:
      - name: qwen2.5-0.5b-instruct
      - name: qwen2.5-7b-instruct
      - name: qwen2.5-32b-instruct      # 2 GPUs per replica, tensor parallel 2 (registry)
        replicas: 2
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cluster.errors import ClusterError, SpecError
from cluster.spec import DesignConfig, ExecutionConfig, FitConfig, RunSpec, format_validation_error
from elicit.config import SIMULATED_NAMES, ModeConfig, ModelConfig, PromptConfig, ScorerKind

logger = logging.getLogger(__name__)

_EXPLICIT = {
    "name", "scorer", "gpus_per_replica", "tensor_parallel", "dtype", "max_context", "chat",
    "replicas",
}  # fmt: skip


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class SweepModel(_Spec):
    """One model of a sweep; unset fields come from the model registry."""

    name: str
    """Registry name (`valuescope models`), Hugging Face id, local folder, or `simulated`."""
    key: str | None = None
    """Short name of the model in this sweep; its run id is `<sweep name>-<key>`. Null = the
    registry name, else the id made path-safe."""
    family: str | None = None
    """Model family for the summary (`qwen2.5`, `llama3`…); null = the registry's."""
    params_b: float | None = Field(None, gt=0)
    """Parameters in billions, for the summary and scale analyses; null = the registry's."""
    gpus_per_replica: float | None = Field(None, ge=0)
    """GPUs per replica (several = one node, tensor parallel inside); null = the registry's
    (`gpus`), 0 for models it does not list."""
    tensor_parallel: int | None = Field(None, ge=1)
    """Tensor-parallel size inside a replica (vllm); null = the registry's, else 1."""
    dtype: str | None = None
    """Weights dtype; null = the registry's on GPUs, `auto` on CPU."""
    max_context: int | None = Field(None, ge=16)
    """Longest prompt in tokens; null = the registry's / the model's own."""
    chat: bool | None = None
    """`true` chat model (chat template), `false` base model (plain text prompt); null = the
    registry's, else decided from the tokenizer."""
    replicas: int | Literal["auto"] = Field(1, union_mode="left_to_right")
    """Data-parallel replicas; `auto` = as many as the whole cluster fits (the model then runs
    alone). Integers let several models share the cluster."""
    scorer: ScorerKind | None = None
    """Engine; null = the sweep's `scorer`, else `simulated` for `simulated`, `vllm` for a
    model that needs GPUs, `hf` otherwise."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Any other model field of a run spec (`batch_size`, `seed`, `base_url`, `api_key_env`,
    `noise`…), validated like a run spec's model."""

    @field_validator("options")
    @classmethod
    def _no_duplicates(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & _EXPLICIT)
        if clash:
            raise ValueError(f"set {clash} as model fields, not under options")
        return value

    @field_validator("replicas")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("replicas must be ≥ 1 or 'auto'")
        return value


class SweepSpec(_Spec):
    """A sweep: the same questions to many models, one run per model."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """Sweep name: the prefix of every run id (letters, digits, '.', '_', '-')."""
    root: str = "results"
    """Results root shared by every run: a folder or `s3://bucket/prefix`."""
    models: list[SweepModel] = Field(min_length=1)
    """The models; each becomes the run `<name>-<key>`."""
    outcomes: list[str] = Field(default_factory=lambda: ["starter"])
    """Outcome sets, as in a run spec."""
    prompt: PromptConfig = PromptConfig()
    """What every model is asked."""
    mode: ModeConfig = ModeConfig()
    """How answers are read."""
    design: DesignConfig = DesignConfig()
    """Which pairs are asked."""
    fit: FitConfig = FitConfig()
    """How utilities are estimated."""
    execution: ExecutionConfig = ExecutionConfig()
    """Where the work runs (shared by the runs)."""
    scorer: ScorerKind | None = None
    """Engine for models that name none (see `models[].scorer`)."""
    gpus: float | None = Field(None, ge=0)
    """GPUs to plan for; null = the cluster's GPUs when the sweep starts. On an autoscaling
    cluster set the maximum it may grow to."""
    max_concurrent: int | None = Field(None, ge=1)
    """At most this many models at once; null = as many as fit."""

    @field_validator("outcomes", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_keys(self) -> SweepSpec:
        keys = [model_key_of(m) for m in self.models]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(
                f"models share the key(s) {dupes}; give each a distinct `key` (run ids are "
                "`<sweep name>-<key>`)"
            )
        return self


def model_key_of(model: SweepModel) -> str:
    """The sweep key of a model (explicit, registry name, or the id made path-safe)."""
    if model.key:
        return model.key
    from elicit.errors import ModelNotFoundError
    from elicit.models import lookup
    from storage.layout import model_key

    if model.name not in SIMULATED_NAMES:
        try:
            entry = lookup(model.name)
            if entry.source != "local" and entry.name != entry.hf_id:
                return entry.name
        except ModelNotFoundError:
            pass
    return model_key(model.name).lower()


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (errors name the file, line and field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise SpecError(f"sweep file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"sweep file {str(path)!r}: cannot read it: {exc}") from None
    return parse_sweep(data, str(path), node)


def parse_sweep(data: Any, source: str = "<sweep>", node: yaml.Node | None = None) -> SweepSpec:
    """Validate an already-parsed sweep mapping (errors name the source and field)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a sweep must be a mapping of fields")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid sweep: {format_validation_error(exc, source, node)}") from None


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedModel:
    """A sweep model resolved against the registry, with the resources it holds."""

    key: str
    run_id: str
    family: str
    params_b: float | None
    config: ModelConfig
    gpus: float
    """GPUs held while it runs (replicas × GPUs per replica; the whole cluster for `auto`)."""
    cpus: float
    """CPUs held while it runs."""


def resolve_model(sweep: SweepSpec, m: SweepModel) -> PlannedModel:
    """Fill a sweep model from the registry and build its run's model config."""
    from elicit.errors import ModelNotFoundError
    from elicit.models import ModelEntry, lookup

    key = model_key_of(m)
    simulated = m.name in SIMULATED_NAMES or m.scorer == "simulated"
    entry: ModelEntry | None = None
    if not simulated:
        try:
            entry = lookup(m.name)
        except ModelNotFoundError as exc:
            raise SpecError(f"sweep {sweep.name!r}, model {key!r}: {exc}") from None
    gpus = m.gpus_per_replica if m.gpus_per_replica is not None else (entry.gpus if entry else 0)
    tp = m.tensor_parallel or (entry.tensor_parallel if entry and gpus >= 2 else 1)
    dtype = m.dtype or (entry.dtype if entry and gpus > 0 else "auto")
    scorer = m.scorer or sweep.scorer
    if scorer is None:
        scorer = "simulated" if simulated else ("vllm" if gpus >= 1 else "hf")
    data: dict[str, Any] = {
        **m.options,
        "name": m.name,
        "scorer": scorer,
        "gpus_per_replica": gpus,
        "tensor_parallel": tp,
        "dtype": dtype,
        "replicas": m.replicas,
    }
    for name, value in (("max_context", m.max_context), ("chat", m.chat)):
        if value is not None:
            data[name] = value
    if m.chat is None and entry is not None and entry.chat is not None:
        data["chat"] = entry.chat
    try:
        config = ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"sweep {sweep.name!r}, model {key!r}: {format_validation_error(exc, 'model')}"
        ) from None
    from storage.layout import check_run_id

    run_id = check_run_id(f"{sweep.name}-{key}")
    replicas = m.replicas if isinstance(m.replicas, int) else 1
    family = m.family or (entry.family if entry else ("simulated" if simulated else "unknown"))
    params = m.params_b if m.params_b is not None else (entry.params_b if entry else None)
    cpus = replicas * sweep.execution.num_cpus_per_replica
    return PlannedModel(key, run_id, family, params, config, replicas * gpus, cpus)


def run_spec(sweep: SweepSpec, planned: PlannedModel, *, concurrent: bool) -> RunSpec:
    """The run spec of one model of a sweep."""
    execution = sweep.execution
    if concurrent and execution.progress in ("auto", "rich"):
        # several runs at once: live bars would overwrite each other; plain lines interleave
        execution = execution.model_copy(update={"progress": "plain"})
    return RunSpec(
        run_id=planned.run_id,
        name=sweep.name,
        root=sweep.root,
        outcomes=sweep.outcomes,
        models=[planned.config],
        prompt=sweep.prompt,
        mode=sweep.mode,
        design=sweep.design,
        fit=sweep.fit,
        execution=execution,
    )


def plan_waves(
    needs: dict[str, tuple[float, float] | None], gpus: float, cpus: float
) -> list[list[str]]:
    """First-fit-decreasing bins of ``(gpus, cpus)`` needs in a cluster of that capacity.

    Models in one bin can run side by side; the scheduler starts later ones as soon as
    earlier ones free enough. A need of ``None`` (``replicas: auto``) is the whole cluster.

    Raises:
        SpecError: a model needs more than the whole cluster.
    """
    whole = (gpus, cpus)
    bins: list[tuple[list[str], list[float]]] = []

    def size(kv: tuple[str, tuple[float, float] | None]) -> tuple[float, float, str]:
        g, c = kv[1] or whole
        return (-g, -c, kv[0])

    for key, need in sorted(needs.items(), key=size):
        g, c = need or whole
        if g > gpus + 1e-9 or c > cpus + 1e-9:
            raise SpecError(
                f"model {key!r} needs {g:g} GPUs and {c:g} CPUs at once, more than the "
                f"cluster's {gpus:g} GPUs and {cpus:g} CPUs; lower its replicas or "
                "gpus_per_replica, or set the sweep's `gpus` to what an autoscaler can add"
            )
        for members, free in bins:
            if need is not None and g <= free[0] + 1e-9 and c <= free[1] + 1e-9:
                members.append(key)
                free[0] -= g
                free[1] -= c
                break
        else:
            bins.append(([key], [gpus - g, cpus - c] if need is not None else [0.0, 0.0]))
    return [members for members, _ in bins]


# --- running ----------------------------------------------------------------------------------


@dataclass
class SweepRun:
    """What happened to one model of a sweep."""

    key: str
    run_id: str
    model: str
    family: str
    params_b: float | None
    gpus: float
    status: str = "pending"
    message: str | None = None
    seconds: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    """A finished sweep: its runs and the similarity of their utilities."""

    name: str
    root: str
    runs: list[SweepRun]
    similarity: list[dict[str, Any]]
    waves: list[list[str]]

    @property
    def failed(self) -> list[SweepRun]:
        return [r for r in self.runs if r.status != "done"]


def _capacity(ray: Any, sweep: SweepSpec) -> tuple[float, float]:
    total = ray.cluster_resources()
    gpus = sweep.gpus if sweep.gpus is not None else float(total.get("GPU", 0.0))
    return gpus, float(total.get("CPU", 0.0))


def _stored_manifest(root: str, run_id: str) -> Any:
    from storage import Root, RunLayout
    from storage.manifest import read_manifest

    return read_manifest(RunLayout(Root(root), run_id))


def _already_done(root: str, run_id: str) -> bool:
    manifest = _stored_manifest(root, run_id)
    return manifest is not None and manifest.status == "done"


def _conflict(spec: RunSpec) -> str | None:
    """Why a stored run with this id cannot be resumed with this spec, if it cannot."""
    manifest = _stored_manifest(spec.root, spec.resolved_run_id())
    if manifest is None or spec.same_content(manifest.spec):
        return None
    return (
        f"run {spec.resolved_run_id()!r} in {spec.root!r} was started with a different spec "
        "(another design, prompt or model setting); rename the sweep or delete the old run"
    )


def _run_one(spec: RunSpec, record: SweepRun) -> None:
    from cluster.pipeline.run import run

    start = time.perf_counter()
    record.status = "running"
    try:
        if _already_done(spec.root, record.run_id):
            record.status = "done"
            record.message = "already done (skipped)"
            return
        run(spec)
        record.status = "done"
    except Exception as exc:  # one model failing does not stop the others
        record.status = "failed"
        record.message = str(exc)[:500]
        logger.error("sweep model %s (run %s) failed: %s", record.key, record.run_id, exc)
    finally:
        record.seconds = time.perf_counter() - start


def run_sweep(sweep: SweepSpec, *, echo: Any = None) -> SweepResult:
    """Run every model of a sweep, packed onto the cluster, then write the summary.

    Returns the result even when models failed (see :attr:`SweepResult.failed`).
    """
    from cluster.execution.ray_runtime import init_ray
    from elicit.outcomes import combine, load_outcomes
    from storage import Root

    say = echo or (lambda text: None)
    planned = [resolve_model(sweep, m) for m in sweep.models]
    combine([load_outcomes(s) for s in sweep.outcomes])  # bad inputs fail before Ray starts
    Root(sweep.root).check_writable()
    ray = init_ray(sweep.execution.ray_address)
    gpus, cpus = _capacity(ray, sweep)
    needs: dict[str, tuple[float, float] | None] = {
        p.key: None if p.config.replicas == "auto" else (p.gpus, p.cpus) for p in planned
    }
    waves = plan_waves(needs, gpus, cpus)
    say(
        f"sweep {sweep.name}: {len(planned)} models on {gpus:g} GPUs / {cpus:g} CPUs; "
        f"plan: {' | '.join(', '.join(w) for w in waves)}"
    )
    concurrent = sweep.max_concurrent != 1 and any(len(w) > 1 for w in waves)
    by_key = {p.key: p for p in planned}
    records = {
        p.key: SweepRun(p.key, p.run_id, p.config.name, p.family, p.params_b, p.gpus)
        for p in planned
    }
    specs = {p.key: run_spec(sweep, p, concurrent=concurrent) for p in planned}
    for key, spec in specs.items():  # a run stored with another spec fails now, not mid-sweep
        problem = _conflict(spec)
        if problem:
            records[key].status, records[key].message = "failed", problem
    order = [k for w in waves for k in w if records[k].status == "pending"]
    free = [gpus, cpus]
    finished: queue.Queue[str] = queue.Queue()
    running: set[str] = set()

    def hold(key: str, sign: float) -> None:
        g, c = needs[key] or (gpus, cpus)
        free[0] -= sign * g
        free[1] -= sign * c

    def start(key: str) -> None:
        hold(key, +1)
        running.add(key)
        say(f"sweep {sweep.name}: starting {key} (run {by_key[key].run_id})")

        def target() -> None:
            try:
                _run_one(specs[key], records[key])
            finally:
                finished.put(key)

        threading.Thread(target=target, name=f"sweep-{key}", daemon=True).start()

    while order or running:
        for key in list(order):
            g, c = needs[key] or (gpus, cpus)
            room = sweep.max_concurrent is None or len(running) < sweep.max_concurrent
            if room and g <= free[0] + 1e-9 and c <= free[1] + 1e-9:
                order.remove(key)
                start(key)
        if not running:  # unreachable: the plan checked that each model fits an idle cluster
            raise ClusterError(f"sweep {sweep.name}: cannot schedule {', '.join(order)}")
        done = finished.get()
        running.discard(done)
        hold(done, -1)
        rec = records[done]
        tail = f": {rec.message}" if rec.message else ""
        say(f"sweep {sweep.name}: {done} {rec.status} in {rec.seconds:.1f} s{tail}")
    result = SweepResult(sweep.name, sweep.root, list(records.values()), [], waves)
    summarise(sweep, result)
    return result


# --- summary ----------------------------------------------------------------------------------


def _latest_fits(root: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    from cluster.store import RunStore

    with RunStore(root) as store:
        return store.latest_fits(run_ids)


def similarity(mu: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Pearson and Spearman correlation of every two models' utilities (shared outcomes)."""
    import numpy as np
    from scipy.stats import rankdata

    keys = sorted(mu)
    rows = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            shared = sorted(set(mu[a]) & set(mu[b]))
            if len(shared) < 3:
                continue
            x = np.array([mu[a][o] for o in shared])
            y = np.array([mu[b][o] for o in shared])
            pearson = float(np.corrcoef(x, y)[0, 1])
            spearman = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
            rows.append(
                {"key_a": a, "key_b": b, "n_outcomes": len(shared), "pearson": pearson,
                 "spearman": spearman}
            )  # fmt: skip
    return rows


def _write_parquet(root: Any, path: str, rows: list[dict[str, Any]], schema: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink, compression="zstd")
    root.write_atomic(path, sink.getvalue())


def summarise(sweep: SweepSpec, result: SweepResult) -> None:
    """Fill fit metrics and similarities into ``result`` and write the summary tables."""
    import pyarrow as pa

    from storage import Root

    root = Root(sweep.root)
    fits = _latest_fits(sweep.root, [r.run_id for r in result.runs])
    mu = {}
    for rec in result.runs:
        found = fits.get(rec.run_id)
        if found is None:
            continue
        rec.fit = {
            k: found["fit"].get(k)
            for k in ("fit_id", "holdout_accuracy", "order_consistency", "n_pairs", "n_rows")
        }
        if rec.status == "done":
            mu[rec.key] = found["mu"]
    run_of = {r.key: r.run_id for r in result.runs}
    result.similarity = [
        {"sweep": sweep.name, "run_a": run_of[s["key_a"]], "run_b": run_of[s["key_b"]], **s}
        for s in similarity(mu)
    ]
    stamp = dt.datetime.now(dt.UTC)
    runs_schema = pa.schema(
        [("sweep", pa.string()), ("key", pa.string()), ("run_id", pa.string()),
         ("model", pa.string()), ("family", pa.string()), ("params_b", pa.float64()),
         ("gpus", pa.float64()), ("status", pa.string()), ("message", pa.string()),
         ("seconds", pa.float64()), ("fit_id", pa.string()), ("holdout_accuracy", pa.float64()),
         ("order_consistency", pa.float64()), ("n_pairs", pa.int64()),
         ("updated_at", pa.timestamp("us", tz="UTC"))]
    )  # fmt: skip
    rows = [
        {"sweep": sweep.name, "key": r.key, "run_id": r.run_id, "model": r.model,
         "family": r.family, "params_b": r.params_b, "gpus": r.gpus, "status": r.status,
         "message": r.message, "seconds": r.seconds, "fit_id": r.fit.get("fit_id"),
         "holdout_accuracy": r.fit.get("holdout_accuracy"),
         "order_consistency": r.fit.get("order_consistency"), "n_pairs": r.fit.get("n_pairs"),
         "updated_at": stamp}
        for r in result.runs
    ]  # fmt: skip
    sim_schema = pa.schema(
        [("sweep", pa.string()), ("run_a", pa.string()), ("run_b", pa.string()),
         ("key_a", pa.string()), ("key_b", pa.string()), ("n_outcomes", pa.int64()),
         ("pearson", pa.float64()), ("spearman", pa.float64())]
    )  # fmt: skip
    folder = f"sweep={sweep.name}"
    _write_parquet(root, root.path("sweeps", folder, "runs.parquet"), rows, runs_schema)
    _write_parquet(
        root,
        root.path("sweep_similarity", folder, "similarity.parquet"),
        result.similarity,
        sim_schema,
    )
    manifest = {
        "sweep": sweep.name,
        "updated_at": stamp.isoformat(timespec="seconds"),
        "spec": sweep.model_dump(mode="json"),
        "plan": result.waves,
        "runs": [asdict(r) for r in result.runs],
    }
    root.write_atomic(
        root.path("sweeps", folder, "sweep.json"),
        json.dumps(manifest, indent=2, default=str).encode(),
    )
