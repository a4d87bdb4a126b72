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
    from fit.analyses.convergence import convergence as similarity
    from fit.analyses.convergence import plot_convergence

    run_id = ensure_base_run(ctx)
    models = ctx.store.models(run_id)
    if len(models) < 2:
        raise AnalysisError(
            f"convergence compares the models of one run; run {run_id!r} has "
            f"{len(models)} model(s) (list several under `models:` in the spec, or repeat --model)"
        )
    res = similarity({m: ctx.store.utilities(run_id, m) for m in models})
    off = ~np.eye(len(res.models), dtype=bool)
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


def robustness(ctx: Context) -> list[Output]:
    """Position bias and low-mass answers in the base run; rank agreement of utilities fitted
    under ≥ 3 paraphrased wordings of the question (unless paraphrases are switched off)."""
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
    outputs = []
    for model in ctx.store.models(run_id):
        rows = ctx.store.oriented_rows(run_id, model)
        pb = position_bias(rows["model"], rows["p_a"])
        errors = [None if e is None or e != e else e for e in rows["error"]]
        rq = response_quality(rows["model"], rows["mass"], errors)
        fit = ctx.store.latest_fit(run_id, model)
        row: dict[str, Any] = {
            "mean_p_first": float(pb.mean_p_first[0]),
            "first_share": float(pb.first_share[0]),
            "position_bias_beta": fit.get("position_bias"),
            "order_consistency": fit.get("order_consistency"),
            "low_mass_share": float(rq.low_mass_share[0]),
            "mean_mass": float(np.nanmean(rows["mass"]))
            if np.isfinite(rows["mass"]).any()
            else None,
            "error_share": float(rq.error_share[0]),
            "n_rows": int(rq.n_rows[0]),
            "paraphrase_mean_spearman": None,
            "n_wordings": 0,
            "paraphrase_n_outcomes": None,
        }
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
            detail = [
                {"wording": a, "other": b, "spearman": para.spearman[i, j], "run": runs[a]}
                for i, a in enumerate(para.templates)
                for j, b in enumerate(para.templates)
                if i != j
            ]
            panels.append((plot_paraphrase_sensitivity, para, "paraphrases"))

        def plot(_: Any, path: str, panels: list[Any] = panels) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                files = []
                for k, (fn, result, _title) in enumerate(panels):
                    files.append(os.path.join(tmp, f"{k}.png"))
                    fn(result, files[-1])
                combine_pngs(files, path)

        outputs.append(finish(ctx, run_id, model, row, plot, pb, details={"paraphrases": detail}))
    return outputs
