"""``valuescope control``: fine-tune a run's model toward target preferences, then measure how
far it moved.

1. The target: P(i ≻ j) over pairs of the run's outcomes, from the run's assembly
   (``valuescope assembly``) or a CSV/Parquet file with columns ``outcome_a``, ``outcome_b``,
   ``p_target``.
2. The split (:func:`fit.analyses.control.control_split`): held-out outcomes (every pair touching
   one is never trained on), and held-out pairs among the training outcomes.
3. Before: the model answers every target pair in both orders (logprob mode, the run's prompt,
   through the hf scorer in this process); utilities are fitted to its answers.
4. Training (:mod:`cluster.control.finetune`) on the training pairs, both orders; the tuned weights
   (LoRA merged) are saved as a model folder the hf scorer loads like any local model.
5. After: the saved model answers the same prompts; agreement with the target per split, the
   utilities' rank correlation with the target's, and the political lean (when the target came
   from an assembly whose members' politics vary) before and after.

Tables (``<root>/analyses/control/run_id=<run>/model=<model>/``): ``analysis_control`` (one
row), ``analysis_control_pairs`` (per pair: role, target, before, after),
``analysis_control_utilities`` (per outcome: target, before, after) and
``analysis_control_training`` (loss per epoch); a figure beside the other analyses'. Each run
of ``control`` on the same run and model replaces the previous tables.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cluster.control.assembly import ANALYSIS as ASSEMBLY
from cluster.control.assembly import pick_model, run_outcomes
from cluster.control.finetune import (
    TrainSettings,
    default_lr,
    finetune,
    pick_method,
    save_model,
    settings_dict,
)
from cluster.errors import ControlError
from cluster.execution.progress import Progress, Style
from cluster.experiments.common import Context, Options, base_from_run
from cluster.experiments.io import finish
from cluster.store import RunStore
from elicit.config import ModeConfig, ModelConfig
from elicit.outcomes import OutcomeSet
from fit.analyses.control import (
    ROLES,
    ControlResult,
    PairRole,
    compare,
    control_split,
    fit_target,
    lean,
)
from storage import Root, model_key
from storage.manifest import spec_hash

logger = logging.getLogger(__name__)

ANALYSIS = "control"


@dataclass(frozen=True)
class ControlOptions:
    """Settings of one control run."""

    target: str = "assembly"
    """``assembly`` (the run's stored assembly target) or a CSV/Parquet file with columns
    ``outcome_a``, ``outcome_b``, ``p_target`` (= P(a ≻ b))."""
    method: Literal["auto", "lora", "full"] = "auto"
    """``full`` fine-tuning, ``lora`` adapters, or ``auto`` (full up to 1B parameters)."""
    epochs: int = 3
    """Passes over the training examples."""
    lr: float | None = None
    """AdamW learning rate (null: 1e-4 for full, 5e-4 for LoRA)."""
    batch_size: int = 8
    """Examples per optimiser step."""
    lora_rank: int = 8
    """LoRA rank."""
    layers: int | None = None
    """Train only the last this-many transformer blocks (null = all)."""
    heldout_outcomes: float = 0.2
    """Share of outcomes held out of training."""
    heldout_pairs: float = 0.25
    """Share of the pairs among training outcomes held out."""
    seed: int = 0
    """Seed of the split, the example order and the adapters."""
    model: str | None = None
    """Model of the run to tune (default: the run's first)."""
    out: str | None = None
    """Folder for the tuned model (default: ``<root>/tuned/<run>/<model>-<method>-<hash>`` on a
    local root, the valuescope cache otherwise)."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    progress: Style = "auto"
    """Progress display of scoring and training."""


@dataclass
class ControlOutput:
    """What a control run produced."""

    run_id: str
    model: str
    row: dict[str, Any]
    result: ControlResult
    model_dir: str
    figure: str | None


@dataclass(frozen=True)
class Target:
    """Target P(i ≻ j) over unordered pairs of the run's outcomes (i < j by index)."""

    i: np.ndarray
    j: np.ndarray
    p: np.ndarray
    source: str
    lean_axis: np.ndarray | None = None
    """Per-outcome lean loadings from the assembly (None when unknown)."""


def check_tunable(model: ModelConfig, run_id: str) -> None:
    """Refuse models whose weights cannot be fine-tuned here."""
    kind = model.scorer_kind
    if kind == "simulated":
        raise ControlError(
            f"run {run_id!r}: model {model.name!r} is a simulated agent with no weights to "
            "fine-tune; utility control needs a run of a transformers model (scorer hf or vllm)"
        )
    if kind == "openai":
        raise ControlError(
            f"run {run_id!r}: model {model.name!r} is served over an OpenAI-compatible API, whose "
            "weights are not available here; run the model with scorer hf or vllm to control it"
        )


def _orient(a: list[str], b: list[str], p: np.ndarray, index: dict[str, int], where: str) -> Target:
    from elicit.design import index_pairs
    from elicit.errors import ElicitError

    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))
    if bad.size:
        raise ControlError(
            f"{where}: row {bad[0] + 1} has p_target = {p[bad[0]]}; probabilities lie in [0, 1]"
        )
    try:
        lo, hi, keep, swapped = index_pairs(a, b, index, where)
    except ElicitError as exc:
        raise ControlError(f"{exc}; target pairs must name the run's outcome ids") from None
    return Target(lo, hi, np.where(swapped, 1.0 - p[keep], p[keep]), where)


def load_target(root: Root, run_id: str, model: str, target: str, outcomes: OutcomeSet) -> Target:
    """The target pairs from the run's assembly or a file.

    Raises:
        ControlError: no assembly target stored, a missing or unreadable file, missing columns,
            unknown outcome ids, probabilities outside [0, 1], or no pair at all.
    """
    index = outcomes.index()
    if target == ASSEMBLY:
        with RunStore(root) as store:
            rows = [
                (r["outcome_a"], r["outcome_b"], r["p_target"])
                for r in store.analysis_rows("analysis_assembly_target", run_id, model)
            ]
            loadings: dict[str, float] = {}
            if rows:
                loadings = {
                    str(r["outcome_id"]): float(r["lean_loading"])
                    for r in store.analysis_rows("analysis_assembly_utilities", run_id, model)
                    if r.get("lean_loading") is not None
                }
        if not rows:
            raise ControlError(
                f"run {run_id!r}, model {model!r} has no assembly target; make one with "
                f"`valuescope assembly {run_id} --root {root.display(root.base)}` or pass "
                "--target FILE"
            )
        found = _orient(
            [str(r[0]) for r in rows],
            [str(r[1]) for r in rows],
            np.array([float(r[2]) for r in rows]),
            index,
            f"assembly target of run {run_id!r}",
        )
        axis = None
        if loadings and all(o in loadings for o in outcomes.ids):
            axis = np.array([loadings[o] for o in outcomes.ids])
        return replace(found, lean_axis=axis)
    return _orient_file(Path(target), index)


def _orient_file(path: Path, index: dict[str, int]) -> Target:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    where = f"target file {str(path)!r}"
    if not path.is_file():
        raise ControlError(
            f"{where} not found; give `assembly` or a CSV/Parquet file with columns "
            "outcome_a, outcome_b, p_target"
        )
    try:
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ControlError(f"{where}: cannot read it: {exc}") from None
    missing = [c for c in ("outcome_a", "outcome_b", "p_target") if c not in table.column_names]
    if missing:
        raise ControlError(
            f"{where}: missing column(s) {missing}; found {table.column_names}. The target "
            "needs outcome_a, outcome_b and p_target (= P(outcome_a preferred to outcome_b))"
        )
    if table.num_rows == 0:
        raise ControlError(f"{where} is empty: it has the columns but no pairs to train on")
    p = np.asarray(table.column("p_target").cast("float64").to_numpy(zero_copy_only=False))
    return _orient(
        [str(x) for x in table.column("outcome_a").to_pylist()],
        [str(x) for x in table.column("outcome_b").to_pylist()],
        p,
        index,
        where,
    )


def score_pairs(
    scorer: Any, i: np.ndarray, j: np.ndarray, what: str, style: Style, chunk: int = 64
) -> np.ndarray:
    """P(i ≻ j) per pair: the mean of P(i first) and 1 − P(j first), shape (m,); NaN where
    both orientations failed."""
    from elicit.scorers.base import QueryBatch

    a = np.concatenate([i, j])
    b = np.concatenate([j, i])
    p_a = np.full(len(a), np.nan)
    with Progress(what, len(a), style) as bar:
        for start in range(0, len(a), chunk):
            rows = np.arange(start, min(start + chunk, len(a)))
            out = scorer.score(QueryBatch(rows, a[rows], b[rows]))
            ok = np.array([e is None for e in out.error])
            p_a[rows] = np.where(ok, out.p_a, np.nan)
            bar.advance(len(rows), int((~ok).sum()))
    m = len(i)
    both = np.stack([p_a[:m], 1.0 - p_a[m:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair whose two prompts both failed
        return np.nanmean(both, axis=0)


def _model_dir(root: Root, run_id: str, model: str, method: str, key: str) -> Path:
    name = f"{model_key(model)}-{method}-{key[:8]}"
    if root.is_local:
        return Path(root.base) / "tuned" / run_id / name
    from elicit.models import cache_root

    return cache_root().parent / "tuned" / run_id / name


def run_control(
    root: str,
    run_id: str,
    options: ControlOptions,
    *,
    echo: Callable[[str], None] = lambda _msg: None,
) -> ControlOutput:
    """Fine-tune a run's model toward a target and measure agreement before and after.

    Raises:
        ControlError: a simulated or API model, an empty or invalid target, no training pair.
        AnalysisError: unknown run or model.
    """
    from elicit.prompts import PromptTemplate
    from elicit.scorers.hf import HFScorer

    started = time.perf_counter()
    base = base_from_run(root, run_id)
    model = pick_model(base.spec, options.model, run_id)
    check_tunable(model, run_id)
    outcomes = run_outcomes(base)
    target = load_target(base.root, run_id, model.name, options.target, outcomes)
    if len(target.p) == 0:
        raise ControlError(f"{target.source}: no pairs to train on")
    n = len(outcomes)
    try:
        split = control_split(
            n,
            target.i,
            target.j,
            heldout_outcomes=options.heldout_outcomes,
            heldout_pairs=options.heldout_pairs,
            seed=options.seed,
        )
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    ctx = Context(ANALYSIS, base, Options(seed=options.seed), echo=echo)
    counts = {r: int(split.mask(r).sum()) for r in ROLES}
    ctx.say(
        f"{len(target.p)} target pairs from {target.source}: {counts['train']} to train on, "
        f"{counts['heldout_pair']} held-out pairs, {counts['heldout_outcome']} pairs with the "
        f"{int(split.heldout_outcome.sum())} held-out outcome(s)"
    )
    template = PromptTemplate.from_config(base.spec.prompt, "logprob")
    config = model.model_copy(update={"scorer": "hf", "device": options.device})
    scorer = HFScorer(config, ModeConfig(), template, outcomes.texts)
    try:
        n_params = sum(p.numel() for p in scorer.lm.parameters())
        method = pick_method(n_params) if options.method == "auto" else options.method
        settings = TrainSettings(
            method=method,
            epochs=options.epochs,
            lr=options.lr if options.lr is not None else default_lr(method),
            batch_size=options.batch_size,
            lora_rank=options.lora_rank,
            layers=options.layers,
            seed=options.seed,
        )
        p_before = score_pairs(scorer, target.i, target.j, "before: scoring", options.progress)
        train = split.mask("train")
        ti, tj, tp = target.i[train], target.j[train], target.p[train]
        ctx.say(
            f"fine-tuning {model.name} ({method}, {n_params / 1e6:,.0f}M parameters) on "
            f"{2 * len(tp)} prompts for {settings.epochs} epoch(s), lr {settings.lr:g}"
        )
        report = finetune(
            scorer,
            np.concatenate([ti, tj]),
            np.concatenate([tj, ti]),
            np.concatenate([tp, 1.0 - tp]),
            settings,
            progress=options.progress,
        )
        key = spec_hash(
            {
                "run": run_id,
                "model": model.name,
                "target": target.source,
                "p": target.p.round(6).tolist(),
                "settings": settings_dict(settings),
                "split": [options.heldout_outcomes, options.heldout_pairs],
            }
        )
        out = (
            Path(options.out)
            if options.out
            else _model_dir(base.root, run_id, model.name, method, key)
        )
        stamp = {
            "base_model": model.name,
            "base_path": scorer.path,
            "run_id": run_id,
            "target": target.source,
            "settings": settings_dict(settings),
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        model_dir = save_model(scorer, out, stamp)
    finally:
        scorer.close()
    ctx.say(f"tuned weights saved to {model_dir}")
    tuned = HFScorer(
        config.model_copy(update={"path": str(model_dir)}), ModeConfig(), template, outcomes.texts
    )
    try:
        p_after = score_pairs(tuned, target.i, target.j, "after: scoring", options.progress)
    finally:
        tuned.close()
    mu_t, _ = fit_target(target.i, target.j, target.p, n)
    mu_b, _ = fit_target(target.i, target.j, np.clip(p_before, 0, 1), n)
    mu_a, _ = fit_target(target.i, target.j, np.clip(p_after, 0, 1), n)
    result = compare(p_before, p_after, target.p, split, (mu_t, mu_b, mu_a))
    row = _row(result, target, settings, report, counts, split, str(model_dir))
    row["seconds"] = time.perf_counter() - started
    from fit.analyses.control import plot_control

    output = finish(
        ctx,
        run_id,
        model.name,
        row,
        plot_control,
        result,
        details={
            "pairs": _pair_rows(outcomes, target, split, p_before, p_after),
            "utilities": [
                {
                    "outcome_id": o,
                    "heldout": bool(split.heldout_outcome[k]),
                    "mu_target": mu_t[k],
                    "mu_before": mu_b[k],
                    "mu_after": mu_a[k],
                }
                for k, o in enumerate(outcomes.ids)
            ],
            "training": [
                {"epoch": e + 1, "loss": loss} for e, loss in enumerate(report.epoch_loss)
            ],
        },
    )
    return ControlOutput(run_id, model.name, row, result, str(model_dir), output.figure)


def _row(
    result: ControlResult,
    target: Target,
    settings: TrainSettings,
    report: Any,
    counts: dict[PairRole, int],
    split: Any,
    model_dir: str,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target.source,
        "method": settings.method,
        "epochs": settings.epochs,
        "steps": report.steps,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "trainable_params": report.trainable_params,
        "train_pairs": counts["train"],
        "heldout_pairs": counts["heldout_pair"],
        "heldout_outcome_pairs": counts["heldout_outcome"],
        "heldout_outcomes": int(split.heldout_outcome.sum()),
    }
    for role in ROLES:
        row[f"agree_{role}_before"] = result.agreement_before[role].side
        row[f"agree_{role}_after"] = result.agreement_after[role].side
    for role in ROLES:
        row[f"mae_{role}_before"] = result.agreement_before[role].mean_abs
        row[f"mae_{role}_after"] = result.agreement_after[role].mean_abs
    row["spearman_before"] = result.spearman_before
    row["spearman_after"] = result.spearman_after
    axis = target.lean_axis
    row["lean_target"] = lean(result.mu_target, axis) if axis is not None else None
    row["lean_before"] = lean(result.mu_before, axis) if axis is not None else None
    row["lean_after"] = lean(result.mu_after, axis) if axis is not None else None
    row["loss_first_epoch"] = report.epoch_loss[0] if report.epoch_loss else None
    row["loss_last_epoch"] = report.epoch_loss[-1] if report.epoch_loss else None
    row["train_seconds"] = report.seconds
    row["adapter_norm"] = report.adapter_norm  # LoRA: 0 would mean the adapters never moved
    row["model_dir"] = model_dir
    return row


def _pair_rows(
    outcomes: OutcomeSet,
    target: Target,
    split: Any,
    p_before: np.ndarray,
    p_after: np.ndarray,
) -> list[dict[str, Any]]:
    ids = outcomes.ids
    return [
        {
            "outcome_a": ids[int(target.i[k])],
            "outcome_b": ids[int(target.j[k])],
            "role": str(split.role[k]),
            "p_target": float(target.p[k]),
            "p_before": float(p_before[k]),
            "p_after": float(p_after[k]),
        }
        for k in range(len(target.p))
    ]
