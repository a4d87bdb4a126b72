"""``valuescope probe``: linear probes of a run's utilities on its model's hidden states.

For each model of a stored run (one that was run with the ``hf`` or ``vllm`` scorer):

1. the last-token hidden states of every outcome at the chosen layers are read from the cache
   (``<root>/runs/<run>/hidden/model=<model>/<context>/layer=<LLL>.parquet``) or, for the layers
   not cached, computed in one pass of the model (:mod:`elicit.hidden`) and cached;
2. per layer, a ridge probe to μ and a logistic probe of the pairwise preferences on vector
   differences are cross-validated over outcomes (:mod:`fit.probes`);
3. one row per layer goes to ``<root>/analyses/probes/run_id=…/model=…/layers.parquet`` (SQL
   view ``analysis_probes_layers``), a headline row to ``result.parquet`` (``analysis_probes``),
   and the figure (metric vs layer) to ``<root>/figures/run_id=…/model=…/probes.png``; with the
   ``raw`` context the analysis is ``probes-raw`` (``analysis_probes_raw_layers``…,
   ``probes-raw.png``). A later call with other settings replaces these files.

A second call with the same layers and context never loads the model.

Python API::

    from cluster.control.probe import probe, ProbeOptions
    outputs = probe("smollm2-281023ab", root="results", options=ProbeOptions(every=5))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cluster.execution.progress import Progress, Style
from cluster.experiments.common import AnalysisError, Context, Options, base_from_run
from cluster.experiments.io import write_rows
from elicit.config import ModelConfig
from elicit.hidden import (
    EXTRACTION_VERSION,
    PROBE_PROMPT,
    HiddenContext,
    HiddenStateError,
    cached_layers,
    check_probeable,
    choose_layers,
    extract,
    layer_meta,
    load_scorer,
    model_layers,
    read_layer,
    write_layer,
)
from elicit.prompts import PromptTemplate
from storage import RunLayout

logger = logging.getLogger(__name__)

ANALYSIS = "probes"


@dataclass(frozen=True)
class ProbeOptions:
    """What ``valuescope probe`` extracts and fits."""

    model: str | None = None
    """Model of the run to probe; None = every model of the run that has hidden states."""
    every: int | None = None
    """Probe every k-th layer (plus the last block); None = about eight layers."""
    layers: tuple[int, ...] | None = None
    """Explicit layers (0 = embeddings, 1…L = blocks, -1 = the last); overrides ``every``."""
    folds: int = 5
    """K of the K-fold split over outcomes."""
    seed: int = 0
    """Seed of the fold split and of the inner split that picks the logistic penalty."""
    context: HiddenContext = "prompt"
    """``prompt`` (outcome inside a short fixed prompt, chat template) or ``raw`` (text only)."""
    batch_size: int | None = None
    """Outcomes per forward pass; None = the run's model ``batch_size``."""
    device: str | None = None
    """Override the run's device for extraction (``cpu``, ``cuda``); None = the run's."""
    recompute: bool = False
    """Ignore cached hidden states and extract them again."""
    progress: Style = "auto"
    """Progress display of the extraction (rich on a terminal, plain lines otherwise)."""


@dataclass
class ProbeOutput:
    """What was probed for one model."""

    analysis: str
    """Analysis key: ``probes`` (context ``prompt``) or ``probes_raw``; the SQL views are
    ``analysis_<key>`` and ``analysis_<key>_layers``."""
    run_id: str
    model: str
    rows: list[dict[str, Any]]
    """One record per layer (the ``analysis_probes_layers`` rows, without the id columns)."""
    summary: dict[str, Any]
    """The headline row (``analysis_probes``)."""
    figure: str | None
    cache: dict[str, list[int]] = field(default_factory=dict)
    """``hit``: layers read from the cache; ``computed``: layers extracted in this call."""


def _pick_models(run_id: str, models: list[ModelConfig], wanted: str | None) -> list[ModelConfig]:
    if wanted is not None:
        chosen = [m for m in models if m.name == wanted]
        if not chosen:
            names = ", ".join(m.name for m in models)
            raise AnalysisError(f"run {run_id!r} has no model {wanted!r}; its models: {names}")
        check_probeable(chosen[0])
        return chosen
    usable = []
    reasons = []
    for m in models:
        try:
            check_probeable(m)
        except HiddenStateError as exc:
            reasons.append(str(exc))
            continue
        usable.append(m)
    if not usable:
        raise HiddenStateError(f"run {run_id!r}: nothing to probe; " + "; ".join(reasons))
    for reason in reasons:
        logger.warning("skipped: %s", reason)
    return usable


def probe(
    run_id: str,
    root: str = "results",
    options: ProbeOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[ProbeOutput]:
    """Probe every (or one) model of a stored run; see the module docstring.

    Raises:
        AnalysisError: no such run, no such model, no outcomes or no fit (an empty run), too
            few outcomes for the folds.
        HiddenStateError: the model has no hidden states (simulated, openai) or a layer does
            not exist.
    """
    options = options or ProbeOptions()
    base = base_from_run(root, run_id)
    # One analysis name per context, so probes of both contexts stay side by side in SQL
    # (`analysis_probes…` and `analysis_probes_raw…`) rather than overwriting each other.
    name = ANALYSIS if options.context == "prompt" else f"{ANALYSIS}-{options.context}"
    ctx = Context(name, base, Options(seed=options.seed), echo or (lambda _msg: None))
    models = _pick_models(run_id, list(base.spec.models), options.model)
    asked = set(ctx.store.models(run_id))
    for model in models:
        if model.name not in asked:
            raise AnalysisError(
                f"run {run_id!r}, model {model.name!r} has no comparisons: the run is empty "
                "(interrupted before its first shard?); resume it with `valuescope run` on its "
                "spec, then probe it"
            )
    outcomes = ctx.store.outcomes(run_id)
    return [_probe_model(ctx, model, outcomes, options) for model in models]


def _hidden(
    ctx: Context,
    model: ModelConfig,
    ids: list[str],
    texts: list[str],
    options: ProbeOptions,
) -> tuple[dict[int, np.ndarray], int, dict[str, list[int]], float]:
    """Vectors of the chosen layers, from the cache or the model; also L, cache use, seconds."""
    root, run_id = ctx.root, ctx.base.run_id
    layout = RunLayout(root, run_id)
    cached = {} if options.recompute else cached_layers(root, layout, model.name, options.context)
    n_layers: int | None = None
    if cached:
        n_layers = layer_meta(root, next(iter(cached.values()))).get("n_layers")
    if n_layers is None:
        n_layers = model_layers(model)
    layers = choose_layers(n_layers, options.every, options.layers)
    vectors: dict[int, np.ndarray] = {}
    for layer in layers:
        if layer in cached:
            found = read_layer(root, cached[layer], ids)
            if found is not None:
                vectors[layer] = found
    missing = [layer for layer in layers if layer not in vectors]
    cache = {"hit": sorted(vectors), "computed": missing}
    seconds = 0.0
    if not missing:
        ctx.say(f"{model.name}: {len(layers)} layer(s) from the cache, model not loaded")
        return vectors, n_layers, cache, seconds
    update: dict[str, Any] = {}
    if options.device:
        update["device"] = options.device
    run_model = model.model_copy(update=update)
    spec = ctx.base.spec
    template = PromptTemplate.from_config(spec.prompt, mode=spec.mode.kind)
    ctx.say(f"{model.name}: extracting layers {missing} for {len(ids)} outcomes")
    started = time.perf_counter()
    with load_scorer(run_model, template, spec.mode) as scorer:
        load_s = time.perf_counter() - started
        with Progress(
            f"hidden states {model.name}",
            len(ids),
            style=options.progress,
            every_s=5.0,
            unit="outcomes",
        ) as bar:
            result = extract(
                scorer,
                texts,
                missing,
                context=options.context,
                batch_size=options.batch_size,
                on_batch=bar.advance,
            )
        meta_base = {
            "extraction_version": EXTRACTION_VERSION,
            "run_id": run_id,
            "model": model.name,
            "path": scorer.path,
            "context": options.context,
            "prompt": PROBE_PROMPT if options.context == "prompt" else None,
            "system": template.system if options.context == "prompt" else None,
            "n_layers": result.n_layers,
            "dtype": str(scorer.dtype).removeprefix("torch."),
            "device": scorer.device,
        }
    for layer, matrix in result.vectors.items():
        meta = {**meta_base, "layer": layer, "dim": int(matrix.shape[1])}
        write_layer(
            root, layout.hidden_layer(model.name, options.context, layer), ids, matrix, meta
        )
        vectors[layer] = matrix
    seconds = result.seconds
    ctx.say(
        f"{model.name}: {len(ids)} outcomes × {len(missing)} layer(s) in {seconds:.1f} s "
        f"(model load {load_s:.1f} s); cached under {root.display(layout.hidden_dir(model.name, options.context))}"
    )
    return vectors, result.n_layers, cache, seconds


def _probe_model(
    ctx: Context, model: ModelConfig, outcomes: Any, options: ProbeOptions
) -> ProbeOutput:
    from cluster.experiments.io import write_figure
    from fit.analyses._common import AnalysisInputError
    from fit.probes import plot_probes, probe_layer, utility_pair_accuracy

    run_id = ctx.base.run_id
    mu_by_id = ctx.store.utilities(run_id, model.name)
    if not mu_by_id:
        raise AnalysisError(
            f"run {run_id!r}, model {model.name!r} has a fit but no utilities; refit it "
            f"(`valuescope fit {run_id}`)"
        )
    all_ids = list(outcomes.ids)
    texts = list(outcomes.texts)
    vectors, n_layers, cache, extract_s = _hidden(ctx, model, all_ids, texts, options)
    keep = [k for k, oid in enumerate(all_ids) if oid in mu_by_id]
    ids = [all_ids[k] for k in keep]
    mu = np.array([mu_by_id[oid] for oid in ids])
    index = {oid: k for k, oid in enumerate(ids)}
    pp = ctx.store.pair_probs(run_id, model.name)
    usable = [
        k
        for k, (a, b) in enumerate(zip(pp.first, pp.second, strict=True))
        if a in index and b in index
    ]
    first = np.array([index[pp.first[k]] for k in usable], dtype=np.int64)
    second = np.array([index[pp.second[k]] for k in usable], dtype=np.int64)
    p = pp.p[usable] if usable else np.zeros(0)
    started = time.perf_counter()
    results = []
    for layer in sorted(vectors):
        try:
            results.append(
                probe_layer(
                    layer,
                    vectors[layer][keep],
                    mu,
                    first=first,
                    second=second,
                    p=p,
                    folds=options.folds,
                    seed=options.seed,
                )
            )
        except AnalysisInputError as exc:  # e.g. too few outcomes for the folds
            raise AnalysisError(f"run {run_id!r}, model {model.name!r}: {exc}") from None
    probe_s = time.perf_counter() - started
    mu_accuracy = utility_pair_accuracy(mu, first, second, p) if len(p) else float("nan")
    rows = [{**r.row(), "context": options.context, "seed": options.seed} for r in results]
    best_r2 = max(results, key=lambda r: _finite(r.ridge.r2_mean))
    best_acc = max(results, key=lambda r: _finite(r.pairs.accuracy if r.pairs else np.nan))
    summary = {
        "context": options.context,
        "n_layers": n_layers,
        "layers_probed": len(results),
        "n_outcomes": len(ids),
        "n_pairs": results[0].pairs.n_pairs if results[0].pairs else 0,
        "dim": results[0].dim,
        "folds": options.folds,
        "seed": options.seed,
        "best_layer_r2": best_r2.layer,
        "best_r2_mu": best_r2.ridge.r2_mean,
        "best_layer_accuracy": best_acc.layer,
        "best_pair_accuracy": best_acc.pairs.accuracy if best_acc.pairs else None,
        "mu_pair_accuracy": mu_accuracy,
        "layers_cached": len(cache["hit"]),
        "layers_computed": len(cache["computed"]),
        "extract_seconds": extract_s,
        "probe_seconds": probe_s,
    }
    title = f"{model.name} · run {run_id} · {len(ids)} outcomes, {options.folds}-fold"

    def plot(result: Any, path: str) -> Any:
        return plot_probes(result, path, title=title, reference=mu_accuracy)

    figure = write_figure(ctx, run_id, model.name, plot, results)
    write_rows(ctx, run_id, model.name, "layers", rows)
    write_rows(ctx, run_id, model.name, "result", [summary])
    ctx.say(f"{model.name}: probed {len(results)} layer(s) in {probe_s:.1f} s")
    return ProbeOutput(ctx.key, run_id, model.name, rows, summary, figure, cache)


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -np.inf
