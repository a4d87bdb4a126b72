"""Fitting inside a run: statistics from the store, estimators from ``fit``, tables back.

The run's rounds decide what is trained on: round 0 holds the held-out pairs (used only for
held-out metrics), rounds ≥ 1 the training pairs. Statistics come from one DuckDB aggregate
per call (``fit.data``); the estimators work on those sufficient statistics, so a fit costs
O(pairs), not O(rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cluster.store import HOLDOUT_ROUND, RunStore
from fit.errors import EmptyDataError, FitWarning
from fit.metrics import accuracy, holdout_pairs, log_loss, order_consistency
from fit.result import BRADLEY_TERRY, THURSTONIAN, FitResult
from fit.stats import OrientedStats, PairStats, fold
from storage import Root, RunLayout
from storage.manifest import read_manifest

if TYPE_CHECKING:
    from cluster.pipeline.context import RunContext
    from elicit.config import ModelConfig

logger = logging.getLogger(__name__)


def holdout_pair_ids(n: int, size: int, seed: int) -> np.ndarray:
    """Pair ids (i·N + j) of the held-out set."""
    pairs = holdout_pairs(n, size, seed)
    return pairs[:, 0] * n + pairs[:, 1]


def start_graph(n: int, holdout: np.ndarray, seed: int) -> np.ndarray:
    """Pair ids of the random 2-regular start graph (N edges), avoiding held-out pairs."""
    from fit.acquisition import random_regular_start

    pairs = random_regular_start(n, degree=2, seed=seed, exclude=_pairs(holdout, n))
    return np.sort(pairs[:, 0] * n + pairs[:, 1])


def _pairs(ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids // n, ids % n], axis=1)


def _estimate(oriented: OrientedStats, estimator: str, position: bool) -> tuple[FitResult, Any]:
    """Fit utilities (and β when ``position``); returns (result, position fit or None). Without
    ``position`` the statistics are folded, so they must come without partial pairs."""
    from fit.bradley_terry import fit_bradley_terry
    from fit.position import fit_position
    from fit.thurstonian import fit_thurstonian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # e.g. a disconnected early graph
        if position:
            est = BRADLEY_TERRY if estimator == "bt" else THURSTONIAN
            pf = fit_position(oriented, estimator=est, allow_unobserved=True)  # type: ignore[arg-type]
            return pf.fit, pf
        pairs = fold(oriented)
        if estimator == "bt":
            return fit_bradley_terry(pairs, allow_unobserved=True), None
        return fit_thurstonian(pairs, allow_unobserved=True), None


def fit_so_far(ctx: RunContext, model: str, last_round: int) -> FitResult:
    """The spec's estimator (no position term, no bootstrap) on training rounds ≤ ``last_round``:
    what acquisition works from, and what a run reports after each round."""
    store = ctx.store
    train = [r for r in store.rounds(ctx.run_id, model) if HOLDOUT_ROUND < r <= last_round]
    oriented = store.oriented_stats(ctx.run_id, model, ctx.outcomes.ids, train, partial="drop")
    result, _ = _estimate(oriented, ctx.spec.fit.estimator, position=False)
    return result


def holdout_stats(ctx: RunContext, model: str) -> PairStats | None:
    """The folded held-out comparisons of one model (None when there are none)."""
    if HOLDOUT_ROUND not in ctx.store.rounds(ctx.run_id, model):
        return None
    try:
        return fold(
            ctx.store.oriented_stats(
                ctx.run_id, model, ctx.outcomes.ids, [HOLDOUT_ROUND], partial="drop"
            )
        )
    except EmptyDataError:
        return None


def ranked(result: FitResult) -> np.ndarray:
    """Indices of the outcomes with a fitted μ, best first."""
    observed = result.observed if result.observed is not None else np.ones(len(result.mu), bool)
    mu = np.where(observed & np.isfinite(result.mu), result.mu, np.nan)
    order = np.argsort(-np.nan_to_num(mu, nan=-np.inf), kind="stable")
    return order[: int(np.isfinite(mu).sum())]


def acquire(
    ctx: RunContext,
    model: ModelConfig,
    round_: int,
    asked: np.ndarray,
    holdout: np.ndarray,
    want: int,
    result: FitResult | None = None,
) -> np.ndarray:
    """Pair ids for the next active-learning round, from a fit of everything asked so far
    (``result``, when the caller has it already)."""
    from fit.acquisition import information_acquire, reference_acquire

    n = ctx.n
    if result is None:
        result = fit_so_far(ctx, model.name, round_ - 1)
    design = ctx.spec.design
    seed = design.seed * 1_000_003 + round_
    queried = _pairs(asked, n)
    exclude = _pairs(holdout, n)
    if design.acquisition == "reference":
        pairs = reference_acquire(result.mu, queried, n_new=want, exclude=exclude, seed=seed)
    else:
        pairs = information_acquire(result, queried, n_new=want, exclude=exclude, seed=seed)
    return np.sort(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])


def fit_id_for(estimator: str, position_bias: bool) -> str:
    """The id a fit with these settings is stored under (a refit with the same settings
    replaces it): the estimator, ``-pb`` when a position-bias term is fitted."""
    return estimator + ("-pb" if position_bias else "")


def _per_order_metrics(
    result: FitResult, beta: float, train: OrientedStats, held: OrientedStats | None
) -> dict[str, Any]:
    """Held-out accuracy and log-loss per presentation (each order predicted with β) and the
    position-only baseline's, fitted on the training presentations (:mod:`fit.holdout`)."""
    from fit.holdout import baseline_score, oriented_score, position_baseline

    names = ("holdout_oriented", "baseline_oriented")
    out: dict[str, Any] = {f"{n}_{m}": None for n in names for m in ("accuracy", "log_loss")}
    out["baseline_p_first"] = None
    try:
        q = position_baseline(train)
    except EmptyDataError:
        return out
    out["baseline_p_first"] = q
    if held is None or held.n_pairs == 0:
        return out
    for name, score in zip(
        names, (oriented_score(result, held, beta), baseline_score(q, held)), strict=True
    ):
        out[f"{name}_accuracy"] = score.accuracy
        out[f"{name}_log_loss"] = score.log_loss
    return out


def _at_tie(pf: Any) -> dict[str, float | None]:
    """The fits columns of P(first chosen | tie) and its interval (null without β)."""
    if pf is None or not np.isfinite(pf.tie):
        return {"first_at_tie": None, "first_at_tie_lo": None, "first_at_tie_hi": None}
    lo, hi = pf.first_at_tie_interval
    finite = np.isfinite(pf.tie_se)
    return {
        "first_at_tie": pf.first_at_tie,
        "first_at_tie_lo": lo if finite else None,
        "first_at_tie_hi": hi if finite else None,
    }


def fit_model(
    store: RunStore,
    run_id: str,
    model: str,
    outcome_ids: list[str],
    *,
    estimator: str = "thurstonian",
    position_bias: bool = True,
    bootstrap: int = 50,
    seed: int = 0,
) -> tuple[dict[str, Any], pa.Table]:
    """Fit one model's stored comparisons and write its ``utilities`` and ``fits`` tables.

    Utilities, their 95 % intervals (unless ``bootstrap`` is 0) and β come from one
    :func:`fit.full.fit_with_intervals` call; the row keeps the point-fit and interval timings
    apart (``seconds_point``, ``seconds_interval``) next to the whole stage (``seconds``).

    Returns:
        (the fits row as a dict, the utilities table).
    """
    start = time.perf_counter()
    rounds = store.rounds(run_id, model)
    train = [r for r in rounds if r != HOLDOUT_ROUND]
    if not train:
        raise EmptyDataError(f"run {run_id!r}, model {model!r}: no training comparisons stored")
    # Every answered presentation (a position-bias fit models each in its order) and the pairs
    # answered in every order they were asked in (what order-averaged labels may use).
    oriented = store.oriented_stats(run_id, model, outcome_ids, train)
    complete = store.oriented_stats(run_id, model, outcome_ids, train, partial="drop")
    held = held_oriented = None
    if HOLDOUT_ROUND in rounds:
        try:
            held_oriented = store.oriented_stats(run_id, model, outcome_ids, [HOLDOUT_ROUND])
            held = fold(
                store.oriented_stats(run_id, model, outcome_ids, [HOLDOUT_ROUND], partial="drop")
            )
        except EmptyDataError:
            held = None
    all_oriented = store.oriented_stats(run_id, model, outcome_ids, None)
    fitted = oriented if position_bias else complete
    # usable training rows, counted by the same fold that built the statistics
    n_rows = int(fitted.n.sum())
    pairs = fold(complete)
    from fit.full import Estimator, fit_with_intervals

    kind: Estimator = "bradley-terry" if estimator == "bt" else "thurstonian"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # e.g. a disconnected early graph
        whole = fit_with_intervals(
            fitted,
            estimator=kind,
            position_bias=position_bias,
            allow_unobserved=True,
        )
    result, pf = whole.fit, whole.position
    nan = np.full(len(outcome_ids), np.nan)
    interval_lo, interval_hi = (whole.mu_lo, whole.mu_hi) if bootstrap > 0 else (nan, nan)
    consistency = order_consistency(all_oriented)
    fit_id = fit_id_for(estimator, position_bias)
    per_order = _per_order_metrics(
        result, pf.beta if pf is not None else 0.0, oriented, held_oriented
    )
    row: dict[str, Any] = {
        "run_id": run_id,
        "model": model,
        "fit_id": fit_id,
        "estimator": estimator,
        "n_pairs": pairs.n_pairs,
        "n_rows": n_rows,
        "train_accuracy": accuracy(result, pairs),
        "train_log_loss": log_loss(result, pairs),
        "holdout_accuracy": accuracy(result, held) if held is not None else None,
        "holdout_log_loss": log_loss(result, held) if held is not None else None,
        "order_consistency": consistency.agreement if consistency.n_pairs else None,
        "iterations": result.iterations,
        "converged": result.converged,
        "seconds": time.perf_counter() - start,
        "position_bias": pf.beta if pf is not None else None,
        "position_bias_lo": pf.beta_lo if pf is not None else None,
        "position_bias_hi": pf.beta_hi if pf is not None else None,
        **_at_tie(pf),
        "created_at": dt.datetime.now(dt.UTC),
        "seconds_point": whole.seconds_point,
        "seconds_interval": whole.seconds_interval,
        "bt_scale": result.scale if estimator == "bt" else None,
        "partial_pairs": store.partial_pairs(run_id, model, outcome_ids, None),
        **per_order,
    }
    layout = RunLayout(store.root, run_id)
    sigma2 = result.sigma2 if result.sigma2 is not None else np.full(len(outcome_ids), np.nan)
    observed = result.observed if result.observed is not None else np.ones(len(outcome_ids), bool)
    utilities = store.write_core(
        "utilities",
        layout.utilities(model, fit_id),
        {
            "run_id": run_id,
            "model": model,
            "fit_id": fit_id,
            "outcome_id": outcome_ids,
            "mu": np.where(observed, result.mu, np.nan),
            "sigma2": np.where(observed & np.isfinite(sigma2), sigma2, np.nan),
            "mu_lo": np.where(observed, interval_lo, np.nan),
            "mu_hi": np.where(observed, interval_hi, np.nan),
        },
        num_rows=len(outcome_ids),
    )
    store.write_core("fits", layout.fits(model, fit_id), {k: [v] for k, v in row.items()}, 1)
    return row, utilities


def final_fit(ctx: RunContext, model: ModelConfig) -> tuple[dict[str, Any], pa.Table]:
    """The end-of-run fit of one model, with the spec's estimator settings."""
    f = ctx.spec.fit
    return fit_model(
        ctx.store,
        ctx.run_id,
        model.name,
        ctx.outcomes.ids,
        estimator=f.estimator,
        position_bias=f.position_bias,
        bootstrap=f.bootstrap,
        seed=f.seed,
    )


def refit(
    root: str, run_id: str, *, estimator: str | None = None, position_bias: bool | None = None
) -> list[dict[str, Any]]:
    """Refit every model of a stored run (no model is queried)."""
    from cluster.errors import ClusterError
    from cluster.spec import RunSpec

    r = Root(root)
    layout = RunLayout(r, run_id)
    manifest = read_manifest(layout)
    if manifest is None:
        raise ClusterError(
            f'no run {run_id!r} under {root!r} (no manifest); `valuescope sql "SELECT run_id FROM runs" --root {root}` lists runs'
        )
    spec = RunSpec.model_validate(manifest.spec)
    store = RunStore(r)
    outcome_ids = store.outcome_ids(run_id)
    models = store.models(run_id)
    if not models:
        raise ClusterError(f"run {run_id!r} has no comparisons to fit")
    rows = []
    for model in models:
        row, _ = fit_model(
            store,
            run_id,
            model,
            outcome_ids,
            estimator=estimator or spec.fit.estimator,
            position_bias=spec.fit.position_bias if position_bias is None else position_bias,
            bootstrap=spec.fit.bootstrap,
            seed=spec.fit.seed,
        )
        rows.append(row)
    return rows
