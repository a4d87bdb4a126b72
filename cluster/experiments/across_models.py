"""Analyses across models and of the measurement itself: convergence and robustness
(position bias, answer quality, paraphrase sensitivity).

Both read the base run (a stored run, or the spec run first); robustness also asks a subset of
the base outcomes under the paraphrased wordings of ``fit.analyses.robustness``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from cluster.experiments.coherence import base_outcomes
from cluster.experiments.common import (
    AnalysisError,
    Context,
    Output,
    derive,
    ensure_base_run,
    full_pairs,
    run_derived,
    subset,
    subset_run,
)
from cluster.experiments.io import (
    combine_pngs,
    finish,
)


def convergence(ctx: Context) -> list[Output]:
    """Pairwise similarity of the utility vectors of the models of the base run."""
    from fit.analyses._common import vectors_by_name
    from fit.analyses.convergence import convergence as similarity
    from fit.analyses.convergence import plot_convergence
    from fit.analyses.intervals import (
        mean_off_diagonal_interval,
        row_off_diagonal_interval,
        similarity_replicates,
        with_intervals,
    )

    run_id = ensure_base_run(ctx)
    models = ctx.store.models(run_id)
    if len(models) < 2:
        raise AnalysisError(
            f"convergence compares the models of one run; run {run_id!r} has "
            f"{len(models)} model(s) (list several under `models:` in the spec, or repeat --model)"
        )
    vectors = {m: ctx.store.utilities(run_id, m) for m in models}
    res = similarity(vectors)
    off = ~np.eye(len(res.models), dtype=bool)
    _, _, matrix = vectors_by_name("convergence", vectors)
    pearson_reps, cosine_reps = similarity_replicates(matrix, seed=ctx.options.seed)
    overall = {
        "mean_pearson": mean_off_diagonal_interval(pearson_reps),
        "mean_cosine": mean_off_diagonal_interval(cosine_reps),
    }
    outputs = []
    for k, model in enumerate(res.models):
        row = {
            "mean_pearson": res.mean_pearson,
            "mean_cosine": res.mean_cosine,
            "pearson_to_others": float(np.nanmean(res.pearson[k][off[k]])),
            "cosine_to_others": float(np.nanmean(res.cosine[k][off[k]])),
            "n_models": len(res.models),
            "n_outcomes": res.n_outcomes,
        }
        row = with_intervals(
            row,
            overall
            | {
                "pearson_to_others": row_off_diagonal_interval(pearson_reps, k),
                "cosine_to_others": row_off_diagonal_interval(cosine_reps, k),
            },
        )
        detail = [
            {"other": other, "pearson": res.pearson[k, j], "cosine": res.cosine[k, j]}
            for j, other in enumerate(res.models)
            if j != k
        ]
        plot = plot_convergence if k == 0 else None
        outputs.append(
            finish(
                ctx,
                run_id,
                model,
                row,
                plot,
                res,
                figure_model="all",
                details={"similarity": detail},
            )
        )
    return outputs


def _paraphrase_runs(ctx: Context) -> dict[str, str]:
    """Template id → run id: the default wording and the paraphrases over one subset."""
    from fit.analyses.robustness import PARAPHRASE_TEMPLATES

    opts = ctx.options
    outcomes = subset(base_outcomes(ctx), opts.n_outcomes, opts.seed)
    runs = {ctx.base.spec.prompt.template_id: subset_run(ctx, outcomes)}
    for tid, template in PARAPHRASE_TEMPLATES.items():
        spec = derive(
            ctx,
            tid,
            outcomes,
            full_pairs(outcomes.ids),
            prompt={"template": template, "template_id": tid},
        )
        runs[tid] = run_derived(ctx, spec, f"wording {tid}")
    return runs


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _derived_paraphrase_runs(ctx: Context) -> dict[str, dict[str, str]]:
    """Derived run id → {template id → run id}: every derived run of the base asked with the
    base wording, asked again under each paraphrase (same outcomes, pairs and models)."""
    from fit.analyses.robustness import PARAPHRASE_TEMPLATES

    base_id = ctx.base.run_id
    base_tid = ctx.base.spec.prompt.template_id
    configs = {m.name: m for m in ctx.base.spec.models}
    out: dict[str, dict[str, str]] = {}
    for info in ctx.store.related_runs(base_id):
        rid = str(info["run_id"])
        if (
            rid == base_id
            or any(f"-{t}-" in rid for t in PARAPHRASE_TEMPLATES)
            or "-subset-" in rid
        ):
            continue
        wordings = (
            ctx.store.query(
                f"SELECT DISTINCT template_id FROM comparisons WHERE run_id = {_sql_text(rid)}"
            )
            .column(0)
            .to_pylist()
        )
        if wordings != [base_tid]:
            continue  # a run with its own question (power) or several wordings
        models = [configs[m] for m in ctx.store.models(rid) if m in configs]
        if not models:
            continue
        outcomes = ctx.store.outcomes(rid)
        probs = ctx.store.pair_probs(rid, models[0].name)
        pairs = list(zip(probs.first, probs.second, strict=True))
        runs = {base_tid: rid}
        suffix = rid[len(base_id) + 1 :]
        for tid, template in PARAPHRASE_TEMPLATES.items():
            spec = derive(
                ctx,
                f"{suffix}-{tid}",
                outcomes,
                pairs,
                prompt={"template": template, "template_id": tid},
                models=models,
            )
            runs[tid] = run_derived(ctx, spec, f"{suffix} under wording {tid}")
        out[rid] = runs
    return out


def _order_effect(ctx: Context, run_id: str, model: str) -> Any:
    """Second-listed picks among the run's near-indifferent prompts (fitted |Δμ| small)."""
    from fit.analyses.diagnostics import order_effect

    t = ctx.store.query(
        "SELECT outcome_a, outcome_b, p_a FROM comparisons WHERE error IS NULL AND "
        f"run_id = {_sql_text(run_id)} AND model = {_sql_text(model)}"
    )
    mu = ctx.store.utilities(run_id, model)
    a, b = t.column("outcome_a").to_pylist(), t.column("outcome_b").to_pylist()
    p = np.array([np.nan if x is None else x for x in t.column("p_a").to_pylist()], dtype=float)
    ma = np.array([mu.get(x, np.nan) for x in a])
    mb = np.array([mu.get(x, np.nan) for x in b])
    return order_effect(p, ma - mb), (a, b, p)


def robustness(ctx: Context) -> list[Output]:
    """Position bias and answer quality in the base run (low letter mass in logprob mode,
    refused prompts and unparsed samples in every mode, pairs answered in one order only); rank
    agreement of utilities fitted under ≥ 3 paraphrased wordings of the question (unless
    paraphrases are switched off)."""
    from fit.analyses._common import vectors_by_name
    from fit.analyses.intervals import (
        mean_off_diagonal_interval,
        outcome_weights,
        pair_members,
        similarity_replicates,
        weighted_mean_interval,
        wilson,
        with_intervals,
    )
    from fit.analyses.robustness import (
        paraphrase_sensitivity,
        plot_paraphrase_sensitivity,
        plot_position_bias,
        plot_response_quality,
        position_bias,
        response_quality,
    )

    run_id = ensure_base_run(ctx)
    runs = _paraphrase_runs(ctx) if ctx.options.paraphrases else {}
    derived = _derived_paraphrase_runs(ctx) if ctx.options.paraphrase_derived else {}
    outputs = []
    for model in ctx.store.models(run_id):
        rows = ctx.store.oriented_rows(run_id, model)
        pb = position_bias(rows["model"], rows["p_a"])
        errors = [None if e is None or e != e else e for e in rows["error"]]
        rq = response_quality(rows["model"], rows["mass"], errors)
        fit = ctx.store.latest_fit(run_id, model)
        order, (first, second, p_first) = _order_effect(ctx, run_id, model)
        members, n_ids = pair_members(first, second)
        weights = outcome_weights(members, n_ids, seed=ctx.options.seed)
        decided = np.isfinite(p_first)
        n_low = float(rq.low_mass_share[0] * rq.n_rows[0])
        n_err = float(rq.error_share[0] * rq.n_rows[0])
        # refused (no letter) and unparsed samples, in every mode; letter mass only in logprob
        answers = ctx.store.answer_stats(run_id, model)
        low_mass = float(rq.low_mass_share[0])
        refusal = answers["refusal_rate"]
        n_ok = float(rq.n_rows[0]) - n_err
        bounds: dict[str, Any] = {
            "mean_p_first": weighted_mean_interval(np.where(decided, p_first, np.nan), weights)
            if decided.all()
            else weighted_mean_interval(
                np.nan_to_num(p_first, nan=0.5), weights * decided[None, :]
            ),
            "first_share": weighted_mean_interval(
                (np.nan_to_num(p_first) > 0.5).astype(float), weights * decided[None, :]
            ),
            "error_share": wilson(n_err, float(rq.n_rows[0])),
            "order_second_share": order.second_share_ci,
        }
        row: dict[str, Any] = {
            "mean_p_first": float(pb.mean_p_first[0]),
            "first_share": float(pb.first_share[0]),
            "order_second_share": order.second_share,
            "order_n_prompts": order.n_prompts,
            "order_band": order.band,
            "position_bias_beta": fit.get("position_bias"),
            "first_at_tie": fit.get("first_at_tie"),
            "order_consistency": fit.get("order_consistency"),
            "low_mass_share": low_mass if np.isfinite(low_mass) else None,
            "refusal_share": refusal,
            "unparsed_share": answers["unparsed_share"],
            "partial_pairs": fit.get("partial_pairs"),
            "mean_mass": float(np.nanmean(rows["mass"]))
            if np.isfinite(rows["mass"]).any()
            else None,
            "error_share": float(rq.error_share[0]),
            "n_rows": int(rq.n_rows[0]),
            "paraphrase_mean_spearman": None,
            "n_wordings": 0,
            "paraphrase_n_outcomes": None,
        }
        if fit.get("position_bias_lo") is not None:  # the fit's own interval of β
            bounds["position_bias_beta"] = (fit["position_bias_lo"], fit["position_bias_hi"])
        if fit.get("first_at_tie_lo") is not None:  # P(first chosen | tie), noise units
            bounds["first_at_tie"] = (fit["first_at_tie_lo"], fit["first_at_tie_hi"])
        if np.isfinite(low_mass):
            bounds["low_mass_share"] = wilson(n_low, float(rq.n_rows[0]))
        if refusal is not None:
            bounds["refusal_share"] = wilson(refusal * n_ok, n_ok)
        detail: list[dict[str, Any]] = []
        panels = [(plot_position_bias, pb, "position bias"), (plot_response_quality, rq, "answers")]
        if runs:
            vectors = {tid: ctx.store.utilities(rid, model) for tid, rid in runs.items()}
            para = paraphrase_sensitivity(vectors)
            row |= {
                "paraphrase_mean_spearman": para.mean_spearman,
                "n_wordings": len(para.templates),
                "paraphrase_n_outcomes": para.n_outcomes,
            }
            _, _, matrix = vectors_by_name("paraphrases", vectors)
            rho_reps, _ = similarity_replicates(matrix, rank=True, seed=ctx.options.seed)
            bounds["paraphrase_mean_spearman"] = mean_off_diagonal_interval(rho_reps)
            detail = [
                {"wording": a, "other": b, "spearman": para.spearman[i, j], "run": runs[a]}
                for i, a in enumerate(para.templates)
                for j, b in enumerate(para.templates)
                if i != j
            ]
            panels.append((plot_paraphrase_sensitivity, para, "paraphrases"))

        derived_rows: list[dict[str, Any]] = []
        for rid, truns in derived.items():
            if model not in ctx.store.models(rid):
                continue
            vec = {tid: ctx.store.utilities(r, model) for tid, r in truns.items()}
            dres = paraphrase_sensitivity(vec)
            _, _, matrix = vectors_by_name("paraphrases", vec)
            lo, hi = mean_off_diagonal_interval(
                similarity_replicates(matrix, rank=True, seed=ctx.options.seed)[0]
            )
            derived_rows.append(
                {
                    "run": rid,
                    "mean_spearman": dres.mean_spearman,
                    "mean_spearman_lo": lo,
                    "mean_spearman_hi": hi,
                    "n_wordings": len(dres.templates),
                    "n_outcomes": dres.n_outcomes,
                }
            )
        worst = min(derived_rows, key=lambda r: r["mean_spearman"], default=None)
        row |= {
            "derived_min_spearman": worst["mean_spearman"] if worst else None,
            "derived_min_spearman_run": worst["run"] if worst else None,
            "n_derived_runs": len(derived_rows),
        }
        if worst:
            bounds["derived_min_spearman"] = (worst["mean_spearman_lo"], worst["mean_spearman_hi"])
        row = with_intervals(row, bounds)

        def plot(_: Any, path: str, panels: list[Any] = panels) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                files = []
                for k, (fn, result, _title) in enumerate(panels):
                    files.append(os.path.join(tmp, f"{k}.png"))
                    fn(result, files[-1])
                combine_pngs(files, path)

        outputs.append(
            finish(
                ctx,
                run_id,
                model,
                row,
                plot,
                pb,
                details={"paraphrases": detail, "derived_paraphrases": derived_rows},
            )
        )
    return outputs
