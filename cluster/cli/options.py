"""Spec-or-flags: every command that runs something takes an optional SPEC file and the main
fields as flags, so a quick run needs no file. Flags override the file."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import click


def spec_options(
    func: Callable[..., Any] | None = None, *, check: Literal["inputs", "models"] | None = None
) -> Any:
    """Add ``[SPEC]`` and the override flags to a command; passes ``spec`` (a RunSpec).

    ``check``: before the command starts, load the inputs the spec names (``"inputs"``:
    outcome and pairs files) and also find every model (``"models"``), so a bad one is a
    one-line error before anything is printed, started or written
    (:func:`cluster.pipeline.preflight.preflight`).
    """
    if func is None:
        return functools.partial(spec_options, check=check)

    @click.argument("spec_file", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False))
    @click.option(
        "--model",
        "models",
        multiple=True,
        help="Model: registry name, HF id, local folder, or `simulated` (repeatable).",
    )
    @click.option(
        "--scorer",
        type=click.Choice(["simulated", "hf", "vllm", "openai"]),
        help="Engine for the --model(s).",
    )
    @click.option(
        "--outcomes",
        "outcome_sets",
        multiple=True,
        help="Outcome set: built-in name or file (repeatable).",
    )
    @click.option("--design", type=click.Choice(["full", "pairs", "active"]), help="Pair design.")
    @click.option("--pairs-file", help="Pairs to ask (design `pairs`).")
    @click.option(
        "--mode", type=click.Choice(["logprob", "sample", "reasoning"]), help="Answer mode."
    )
    @click.option("--root", help="Results root (folder or s3://).")
    @click.option("--run-id", help="Run id (default: name + spec hash, so reruns resume).")
    @click.option("--name", help="Run name (prefix of the generated run id).")
    @click.option("--budget", type=int, help="Pairs to ask in total (design `active`).")
    @click.option("--per-round", type=int, help="Pairs added per active-learning round.")
    @click.option("--shard-size", type=int, help="Prompts per shard.")
    @click.option("--replicas", type=int, help="Replicas per model.")
    @click.option("--batch-size", type=int, help="Prompts per forward pass.")
    @click.option("--progress", type=click.Choice(["auto", "rich", "plain", "none"]))
    @click.option(
        "--ray-address",
        help="Ray cluster to run on (default: $RAY_ADDRESS, else a private local Ray).",
    )
    @click.option("--noise", type=float, help="Simulated agent: utility noise σ.")
    @click.option("--position-bias", type=float, help="Simulated agent: bias β toward option A.")
    @click.option("--label-noise", type=float, help="Simulated agent: noise on each answer.")
    @click.option("--refusal-rate", type=float, help="Simulated agent: share of refused prompts.")
    @functools.wraps(func)
    def wrapper(spec_file: str | None, **kwargs: Any) -> Any:
        flags = {k: kwargs.pop(k) for k in list(kwargs) if k in _FLAGS}
        spec = build_spec(spec_file, **flags)
        if check is not None:
            from cluster.jobs.ray_jobs import check_secret_env

            check_secret_env()  # inside a job: the secrets it was submitted with are here
            from cluster.pipeline.preflight import preflight

            preflight(spec, models=check == "models")
        return func(spec=spec, **kwargs)

    return wrapper


_FLAGS = {
    "models",
    "ray_address",
    "noise",
    "position_bias",
    "label_noise",
    "refusal_rate",
    "scorer",
    "outcome_sets",
    "design",
    "pairs_file",
    "mode",
    "root",
    "run_id",
    "name",
    "budget",
    "per_round",
    "shard_size",
    "replicas",
    "batch_size",
    "progress",
}


def _slug(text: str) -> str:
    """A run-id-safe short form of a model or outcome-set name: its last path component
    without a file suffix, lower case, other characters folded to '-'."""
    import re
    from pathlib import PurePosixPath

    base = PurePosixPath(text.rstrip("/")).name or text
    for suffix in (".yaml", ".yml", ".json", ".csv", ".parquet"):
        base = base.removesuffix(suffix)
    return re.sub(r"[^a-z0-9._]+", "-", base.lower()).strip("-._") or "x"


def flags_run_name(data: dict[str, Any]) -> str:
    """The name of a run given by flags alone: ``quickstart`` for the built-in quickstart (no
    model and no outcome set named), else ``<model(s)>-<outcome set(s)>``, e.g.
    ``simulated-starter`` or ``qwen2.5-7b-instruct-my``."""
    models = [m.get("name") for m in data.get("models") or [] if m.get("name")]
    sets = list(data.get("outcomes") or [])
    if not models and not sets:
        return "quickstart"
    from elicit.config import ModelConfig

    model_part = "_".join(_slug(m) for m in models) or _slug(ModelConfig().name)
    set_part = "_".join(_slug(s) for s in sets) or "starter"
    return f"{model_part}-{set_part}"[:100].rstrip("-._")


def build_spec(spec_file: str | None, **flags: Any) -> Any:
    """A RunSpec from an optional file plus flag overrides (validated as a whole)."""
    from cluster.spec import parse_spec, read_spec_file

    data: dict[str, Any] = {}
    source = "<flags>"
    node: Any = None
    if spec_file:
        data, node = read_spec_file(spec_file)
        source = spec_file
    if flags.get("models"):
        data["models"] = [{"name": m} for m in flags["models"]]
    model_overrides = {
        k: flags[k]
        for k in (
            "scorer",
            "replicas",
            "batch_size",
            "noise",
            "position_bias",
            "label_noise",
            "refusal_rate",
        )
        if flags.get(k) is not None
    }
    if model_overrides:
        data["models"] = [{**m, **model_overrides} for m in data.get("models") or [{}]]
    if flags.get("outcome_sets"):
        data["outcomes"] = list(flags["outcome_sets"])
    design = dict(data.get("design") or {})
    for key, field in (
        ("design", "kind"),
        ("pairs_file", "pairs_file"),
        ("budget", "budget"),
        ("per_round", "per_round"),
    ):
        if flags.get(key) is not None:
            design[field] = flags[key]
    if design:
        data["design"] = design
    if flags.get("mode"):
        data["mode"] = {**(data.get("mode") or {}), "kind": flags["mode"]}
    execution = dict(data.get("execution") or {})
    for key in ("shard_size", "progress", "ray_address"):
        if flags.get(key) is not None:
            execution[key] = flags[key]
    if execution:
        data["execution"] = execution
    if not spec_file and "name" not in data:
        data["name"] = flags_run_name(data)
    for key in ("root", "run_id", "name"):
        if flags.get(key) is not None:
            data[key] = flags[key]
    if spec_file and not any(v for v in flags.values()):
        return parse_spec(data, source, node)  # the file alone: errors carry its line numbers
    return parse_spec(data, source)
