"""What a model values: exchange rates, political values, time discounting, power-seeking and
corrigibility (docs/methods.md, "The analyses").

Each function asks its generated outcome set in derived runs (``cluster.experiments.common``),
reads utilities or pairwise probabilities back with SQL, calls the pure function in
``fit.analyses`` and writes a result row, detail tables and a figure per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cluster.experiments.coherence import base_outcomes
from cluster.experiments.common import (
    AnalysisError,
    Context,
    Options,
    Output,
    derive,
    ensure_base_run,
    full_pairs,
    merge,
    run_derived,
    sparse_pairs,
    subset,
    subset_run,
)
from cluster.experiments.io import (
    attributes_of,
    finish,
)
from elicit import generators as gen
from elicit.outcomes import OutcomeSet
from fit.analyses import AnalysisInputError
from storage import model_key

# --- exchange rates ----------------------------------------------------------------------------


def exchange_design(opts: Options) -> OutcomeSet:
    """Ladders "N units of entity X …" for the first ``n_entities`` of each group, plus money."""
    groups = gen.exchange_groups()
    unknown = [g for g in opts.groups if g not in groups]
    if unknown:
        raise AnalysisError(f"unknown exchange group(s) {unknown}; available: {', '.join(groups)}")
    sets = []
    for k, name in enumerate(opts.groups):
        g = groups[name]
        sets.append(
            gen.exchange_outcomes(
                g.entities[: opts.n_entities],
                g.template,
                opts.ns,
                money_anchors=opts.money if k == 0 else (),
                measure=g.measure,
                group=name,
            )
        )
    return merge("exchange_rates", *sets)


def _monotonicity(entity: np.ndarray, n: np.ndarray, mu: np.ndarray) -> float:
    """Share of consecutive ladder steps (N up) where utility goes up too."""
    ups, steps = 0, 0
    for e in np.unique(entity):
        k = np.flatnonzero(entity == e)
        m = mu[k[np.argsort(n[k])]]
        ups += int(np.sum(np.diff(m) > 0))
        steps += len(m) - 1
    return ups / steps if steps else float("nan")


def _plot_ladders(points: tuple[np.ndarray, np.ndarray, np.ndarray], path: str | Path) -> Path:
    """Fallback figure when no rate is defined: utility against ln N per entity."""
    from fit.analyses._common import new_figure, save_figure

    entity, n, mu = points
    fig = new_figure()
    ax = fig.add_subplot()
    for e in np.unique(entity):
        k = np.flatnonzero(entity == e)
        k = k[np.argsort(n[k])]
        ax.plot(np.log(n[k]), mu[k], marker="o", label=str(e))
    ax.set_xlabel("ln N")
    ax.set_ylabel("fitted utility μ")
    ax.set_title("Exchange rates: no entity's utility grows with N (no rate defined)")
    ax.legend(fontsize=7, ncols=2)
    return save_figure(fig, path)


def exchange_rates(ctx: Context) -> list[Output]:
    """μ = a·ln N + b per entity over the ladders, exchange rates against a pivot entity."""
    from fit.analyses.exchange_rates import exchange_rates as rates
    from fit.analyses.exchange_rates import plot_exchange_rates, points_from_attributes

    opts = ctx.options
    outcomes = exchange_design(opts)
    n_pairs = opts.n_pairs if opts.n_pairs is not None else 8 * len(outcomes)
    pairs = sparse_pairs(outcomes.ids, n_pairs, opts.seed)
    run_id = run_derived(
        ctx,
        derive(ctx, "exchange-rates", outcomes, pairs),
        f"ladders of {len(opts.groups)} group(s) × {opts.n_entities} entities × {len(opts.ns)} N",
    )
    attrs = attributes_of(outcomes)
    outputs = []
    for model in ctx.store.models(run_id):
        points = points_from_attributes(attrs, ctx.store.utilities(run_id, model))
        entity, n, mu = points
        row: dict[str, Any] = {
            "pivot": None,
            "n_entities": len(np.unique(entity)),
            "n_valid": 0,
            "excluded": None,
            "mean_r2": None,
            "monotonicity": _monotonicity(entity, n, mu),
            "log10_rate_spread": None,
            "note": None,
        }
        try:
            res = rates(entity, n, mu, pivot=opts.pivot, seed=opts.seed)
        except AnalysisInputError as exc:
            row["note"] = str(exc)
            outputs.append(finish(ctx, run_id, model, row, _plot_ladders, points))
            continue
        valid = res.valid
        money = res.entities.index("money") if "money" in res.entities else None
        row |= {
            "pivot": res.pivot,
            "n_valid": int(valid.sum()),
            "excluded": list(res.excluded),
            "mean_r2": float(np.nanmean(res.r2)),
            "log10_rate_spread": float(np.log10(res.rate[valid].max() / res.rate[valid].min())),
        }
        detail = []
        for k, e in enumerate(res.entities):
            usd = res.rate_matrix[k, money] if money is not None else None
            detail.append(
                {
                    "entity": e,
                    "slope": res.slope[k],
                    "intercept": res.intercept[k],
                    "r2": res.r2[k],
                    "n_points": int(res.n_points[k]),
                    "valid": bool(valid[k]),
                    "rate": res.rate[k],
                    "rate_lo": res.rate_lo[k],
                    "rate_hi": res.rate_hi[k],
                    "usd_per_unit": usd,
                }
            )
        outputs.append(
            finish(ctx, run_id, model, row, plot_exchange_rates, res, details={"rates": detail})
        )
    return outputs


# --- political values --------------------------------------------------------------------------


def _personas(opts: Options) -> list[gen.Persona]:
    every = gen.political_personas()
    if isinstance(opts.personas, int):
        return every[: opts.personas]
    by_id = {p.id: p for p in every}
    unknown = [p for p in opts.personas if p not in by_id]
    if unknown:
        raise AnalysisError(f"unknown persona(s) {unknown}; available: {', '.join(by_id)}")
    return [by_id[p] for p in opts.personas]


def political(ctx: Context) -> list[Output]:
    """PCA of policy utilities: every model, and the first model answering as each persona
    (the persona instruction is the system message)."""
    from fit.analyses.political import plot_political, political_pca

    opts = ctx.options
    policies = subset(gen.policy_outcomes(), opts.n_policies, opts.seed)
    pairs = full_pairs(policies.ids)
    own = run_derived(ctx, derive(ctx, "political", policies, pairs), f"{len(policies)} policies")
    first = ctx.base.spec.models[0]
    system = ctx.base.spec.prompt.system
    vectors: dict[str, dict[str, float]] = {}
    references = []
    for persona in _personas(opts):
        prompt = {
            "system": f"{system}\n\n{persona.instruction()}" if system else persona.instruction(),
            "template_id": f"persona-{persona.id}",
        }
        spec = derive(
            ctx, f"political-{persona.id}", policies, pairs, prompt=prompt, models=[first]
        )
        rid = run_derived(ctx, spec, f"{first.name} as {persona.id}")
        name = f"persona:{persona.id}"
        vectors[name] = ctx.store.utilities(rid, first.name)
        references.append(name)
    models = ctx.store.models(own)
    for model in models:
        vectors[model] = ctx.store.utilities(own, model)
    res = political_pca(vectors, references=references)
    coords = {a: res.coords[k] for k, a in enumerate(res.agents)}
    two = res.coords.shape[1] >= 2
    detail = [
        {
            "agent": a,
            "is_reference": bool(res.is_reference[k]),
            "pc1": float(res.coords[k, 0]),
            "pc2": float(res.coords[k, 1]) if two else None,
        }
        for k, a in enumerate(res.agents)
    ]
    figure_model = models[0] if len(models) == 1 else "all"
    outputs = []
    for k, model in enumerate(models):
        xy = coords[model]
        dist = {r: float(np.linalg.norm(coords[r] - xy)) for r in references}
        nearest = min(dist, key=lambda r: dist[r]) if dist else None
        row = {
            "pc1": float(xy[0]),
            "pc2": float(xy[1]) if two else None,
            "explained_pc1": float(res.explained_variance_ratio[0]),
            "explained_pc2": float(res.explained_variance_ratio[1]) if two else None,
            "nearest_reference": nearest,
            "nearest_distance": dist.get(nearest) if nearest else None,
            "n_policies": len(policies),
            "n_references": len(references),
            "persona_model": first.name,
        }
        plot = plot_political if k == 0 else None
        outputs.append(
            finish(
                ctx,
                own,
                model,
                row,
                plot,
                res,
                figure_model=figure_model,
                details={"coords": detail},
            )
        )
    return outputs


# --- time discounting --------------------------------------------------------------------------


def time_discounting_design(opts: Options) -> tuple[OutcomeSet, list[dict[str, Any]]]:
    """ "$1,000 now" versus "$X in t months" over the options' delays and amounts."""
    return gen.time_discounting_pairs(delays=opts.delays, n_amounts=opts.n_amounts)


def time_discounting(ctx: Context) -> list[Output]:
    """Indifference multiplier per delay from P(later ≻ now); exponential vs hyperbolic."""
    from fit.analyses.time_discounting import plot_time_discounting
    from fit.analyses.time_discounting import time_discounting as discount

    outcomes, grid = time_discounting_design(ctx.options)
    pairs = [(p["outcome_a"], p["outcome_b"]) for p in grid]
    run_id = run_derived(
        ctx,
        derive(ctx, "time-discounting", outcomes, pairs),
        f"$1,000 now vs later at {len(ctx.options.delays)} delays",
    )
    t = np.array([p["delay_months"] for p in grid], dtype=float)
    x = np.array([p["amount"] for p in grid], dtype=float)
    outputs = []
    for model in ctx.store.models(run_id):
        probs = ctx.store.pair_probs(run_id, model).lookup()
        p_later = np.array([probs.get((b, a), np.nan) for a, b in pairs])
        res = discount(t, x, p_later, base_amount=1000.0)
        row = {
            "better": res.better,
            "k_exponential": res.k_exponential,
            "k_hyperbolic": res.k_hyperbolic,
            "rmse_exponential": res.rmse_exponential,
            "rmse_hyperbolic": res.rmse_hyperbolic,
            "n_delays": len(res.delays),
            "n_delays_bracketed": int(sum(s == "ok" for s in res.status)),
            "mean_p_later": float(np.nanmean(p_later)),
            "base_amount": res.base_amount,
        }
        detail = [
            {
                "delay_months": float(res.delays[k]),
                "indifference_amount": res.indifference_amount[k],
                "multiplier": res.multiplier[k],
                "discount": res.discount[k],
                "status": res.status[k],
            }
            for k in range(len(res.delays))
        ]
        outputs.append(
            finish(ctx, run_id, model, row, plot_time_discounting, res, details={"delays": detail})
        )
    return outputs


# --- power-seeking -----------------------------------------------------------------------------


def power(ctx: Context) -> list[Output]:
    """Preference utilities against utilities under the power question, over a subset of the
    base outcomes (both asked as a full graph)."""
    from fit.analyses.power import POWER_TEMPLATE, plot_power, power_correlation

    opts = ctx.options
    outcomes = subset(base_outcomes(ctx), opts.n_outcomes, opts.seed)
    preference = subset_run(ctx, outcomes)
    spec = derive(
        ctx,
        "power",
        outcomes,
        full_pairs(outcomes.ids),
        prompt={"template": POWER_TEMPLATE, "template_id": "power"},
    )
    power_run = run_derived(ctx, spec, "power question")
    categories = {
        o.id: str(o.attributes.get("category", "")) for o in outcomes if "category" in o.attributes
    }
    outputs = []
    for model in ctx.store.models(power_run):
        res = power_correlation(
            ctx.store.utilities(preference, model),
            ctx.store.utilities(power_run, model),
            categories or None,
        )
        row = {
            "pearson": res.pearson,
            "spearman": res.spearman,
            "n_outcomes": res.n,
            "preference_run": preference,
        }
        detail = [
            {"category": c.category, "n": c.n, "pearson": c.pearson, "spearman": c.spearman}
            for c in res.by_category
        ]
        outputs.append(
            finish(ctx, power_run, model, row, plot_power, res, details={"categories": detail})
        )
    return outputs


# --- corrigibility -----------------------------------------------------------------------------


def corrigibility(ctx: Context) -> list[Output]:
    """Utility of accepting a reversal of each preference, built from the model's own fitted
    utilities in the base run (run first when given a spec), against the strength reversed."""
    from fit.analyses.corrigibility import (
        corrigibility as resistance,
    )
    from fit.analyses.corrigibility import (
        plot_corrigibility,
        reversals_from_attributes,
    )

    opts = ctx.options
    base_run = ensure_base_run(ctx)
    base_set = ctx.store.outcomes(base_run)
    configs = {m.name: m for m in ctx.base.spec.models}
    outputs = []
    for model in ctx.store.models(base_run):
        if model not in configs:
            continue
        own = ctx.store.utilities(base_run, model)
        try:
            reversals = gen.reversal_outcomes(base_set, own, opts.n_reversals, opts.seed)
        except gen.GeneratorError as exc:
            raise AnalysisError(f"corrigibility: {exc}") from None
        spec = derive(
            ctx,
            f"corrigibility-{model_key(model)}",
            reversals,
            full_pairs(reversals.ids),
            models=[configs[model]],
        )
        rid = run_derived(ctx, spec, f"{len(reversals)} reversals of {model}'s preferences")
        strength, util = reversals_from_attributes(
            attributes_of(reversals), ctx.store.utilities(rid, model)
        )
        res = resistance(strength, util)
        row = {
            "slope": res.slope,
            "pearson": res.pearson,
            "spearman": res.spearman,
            "intercept": res.intercept,
            "n_reversals": res.n,
            "base_run": base_run,
        }
        outputs.append(finish(ctx, rid, model, row, plot_corrigibility, res))
    return outputs
