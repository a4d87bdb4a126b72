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


def _exchange_fit(
    ctx: Context, attrs: dict[str, dict[str, Any]], run_id: str, model: str
) -> tuple[Any, Any, dict[str, Any]]:
    """(points, result or None, row) of one model of one exchange run."""
    from fit.analyses.diagnostics import monotonicity
    from fit.analyses.exchange_rates import exchange_rates as rates
    from fit.analyses.exchange_rates import points_from_attributes, rate_spreads
    from fit.analyses.intervals import percentile, resample, with_intervals

    opts = ctx.options
    points = points_from_attributes(attrs, ctx.store.utilities(run_id, model))
    entity, n, mu = points
    mono = monotonicity(entity, n, mu, seed=opts.seed)
    row: dict[str, Any] = {
        "pivot": None,
        "n_entities": len(np.unique(entity)),
        "n_valid": 0,
        "excluded": None,
        "mean_r2": None,
        "monotonicity": mono.share,
        "log10_rate_spread": None,
        "note": None,
    }
    intervals = {"monotonicity": mono.share_ci}
    ladders = dict(zip(mono.ladders, mono.ladder_share.tolist(), strict=True))
    try:
        res = rates(entity, n, mu, pivot=opts.pivot, seed=opts.seed)
    except AnalysisInputError as exc:
        row["note"] = str(exc)
        return points, None, with_intervals(row, intervals) | {"ladders": ladders}
    valid = res.valid
    group_of = {
        str(a["entity"]): str(a.get("group", ""))
        for a in attrs.values()
        if a.get("kind") == "exchange"
    }
    spreads = rate_spreads(res, group_of)
    r2 = res.r2[valid & np.isfinite(res.r2)]
    row |= {
        "pivot": res.pivot,
        "n_valid": int(valid.sum()),
        "excluded": list(res.excluded),
        "mean_r2": float(np.mean(r2)) if len(r2) else None,
        # Within one good (group), money left out: a spread across goods or against a rate
        # per dollar mixes scales.
        "log10_rate_spread": float(np.mean([g["log10_spread"] for g in spreads]))
        if spreads
        else None,
    }
    if len(r2) >= 2:
        intervals["mean_r2"] = percentile(r2[resample(len(r2), seed=opts.seed)].mean(axis=1))
    if spreads:
        with np.errstate(invalid="ignore"):
            reps = np.mean(np.stack([g["reps"] for g in spreads]), axis=0)
        intervals["log10_rate_spread"] = percentile(reps)
    row = with_intervals(row, intervals)
    row["spreads"] = spreads
    row["ladders"] = ladders
    return points, res, row


def exchange_rates(ctx: Context) -> list[Output]:
    """μ = a·ln N + b per entity over the ladders, exchange rates against a pivot entity; with
    ``framing``, the same ladders asked under the mutual-exclusivity wording, side by side."""
    from fit.analyses.exchange_rates import plot_exchange_rates

    opts = ctx.options
    outcomes = exchange_design(opts)
    n_pairs = opts.n_pairs if opts.n_pairs is not None else 8 * len(outcomes)
    pairs = sparse_pairs(outcomes.ids, n_pairs, opts.seed)
    run_id = run_derived(
        ctx,
        derive(ctx, "exchange-rates", outcomes, pairs),
        f"ladders of {len(opts.groups)} group(s) × {opts.n_entities} entities × {len(opts.ns)} N",
    )
    framed_run = None
    if opts.framing:
        framed_run = run_derived(
            ctx,
            derive(
                ctx,
                "exchange-exclusive",
                outcomes,
                pairs,
                prompt={"template": gen.EXCLUSIVE_TEMPLATE, "template_id": "exclusive"},
            ),
            "the same ladders under the mutual-exclusivity framing",
        )
    attrs = attributes_of(outcomes)
    outputs = []
    for model in ctx.store.models(run_id):
        points, res, row = _exchange_fit(ctx, attrs, run_id, model)
        spreads = row.pop("spreads", [])
        ladders = row.pop("ladders", {})
        framed = None
        if framed_run is not None:
            _, framed, frow = _exchange_fit(ctx, attrs, framed_run, model)
            frow.pop("spreads", None)
            frow.pop("ladders", None)
            for key in ("log10_rate_spread", "monotonicity"):
                for suffix in ("", "_lo", "_hi"):
                    row[f"framed_{key}{suffix}"] = frow.get(f"{key}{suffix}")
            plain, fr = row.get("log10_rate_spread"), frow.get("log10_rate_spread")
            row["framing_spread_ratio"] = fr / plain if plain and fr is not None else None
            row["framed_run"] = framed_run
        if res is None:
            outputs.append(finish(ctx, run_id, model, row, _plot_ladders, points))
            continue
        money = res.entities.index("money") if "money" in res.entities else None
        detail = []
        for k, e in enumerate(res.entities):
            usd = res.rate_matrix[k, money] if money is not None else None
            item: dict[str, Any] = {
                "entity": e,
                "slope": res.slope[k],
                "intercept": res.intercept[k],
                "r2": res.r2[k],
                "n_points": int(res.n_points[k]),
                "valid": bool(res.valid[k]),
                "rate": res.rate[k],
                "rate_lo": res.rate_lo[k],
                "rate_hi": res.rate_hi[k],
                "usd_per_unit": usd,
                # Share of this ladder's steps (N → next N) where μ rises; money is a ladder too.
                "monotonicity": _finite(ladders[e]) if e in ladders else None,
            }
            if framed is not None and e in framed.entities:
                j = framed.entities.index(e)
                same_pivot = framed.pivot == res.pivot
                item |= {
                    "framed_rate": framed.rate[j] if same_pivot else None,
                    "framed_rate_lo": framed.rate_lo[j] if same_pivot else None,
                    "framed_rate_hi": framed.rate_hi[j] if same_pivot else None,
                }
            detail.append(item)
        spread_rows = [{k: v for k, v in g.items() if k != "reps"} for g in spreads]
        outputs.append(
            finish(
                ctx,
                run_id,
                model,
                row,
                plot_exchange_rates,
                res,
                details={"rates": detail, "spreads": spread_rows},
            )
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


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def political(ctx: Context) -> list[Output]:
    """PCA of policy utilities: every model, and the first model answering as each persona
    (the persona instruction is the system message)."""
    from fit.analyses.intervals import with_intervals
    from fit.analyses.political import plot_political, political_pca

    opts = ctx.options
    policies = subset(gen.policy_outcomes(), opts.n_policies, opts.seed)
    pairs = full_pairs(policies.ids)
    own = run_derived(ctx, derive(ctx, "political", policies, pairs), f"{len(policies)} policies")
    first = ctx.base.spec.models[0]
    system = ctx.base.spec.prompt.system
    vectors: dict[str, dict[str, float]] = {}
    references = []
    if opts.persona_question not in ("system", "question"):
        raise AnalysisError(
            f"persona_question must be 'system' or 'question', got {opts.persona_question!r}"
        )
    for persona in _personas(opts):
        prompt: dict[str, Any]
        if opts.persona_question == "question":
            prompt = {"template": persona.question(), "template_id": f"persona-q-{persona.id}"}
        else:
            prompt = {
                "system": f"{system}\n\n{persona.instruction()}"
                if system
                else persona.instruction(),
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
    res = political_pca(vectors, references=references, seed=opts.seed)
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
            "explained_pc1": _finite(res.explained_variance_ratio[0]),
            "explained_pc2": _finite(res.explained_variance_ratio[1]) if two else None,
            "nearest_reference": nearest,
            "nearest_distance": dist.get(nearest) if nearest else None,
            "n_policies": len(policies),
            "n_references": len(references),
            "persona_model": first.name,
            "persona_question": opts.persona_question,
            "note": res.note,
        }
        a = res.agents.index(model)
        row = with_intervals(
            row,
            {
                f"{name}{c + 1}": (float(ci[0]), float(ci[1]))
                for c in range(res.explained_ci.shape[0])
                for name, ci in (("pc", res.pc_ci[a, c]), ("explained_pc", res.explained_ci[c]))
            },
        )
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
    from fit.analyses.intervals import with_intervals
    from fit.analyses.time_discounting import amount_monotonicity, plot_time_discounting
    from fit.analyses.time_discounting import intervals as discount_intervals
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
        bounds = discount_intervals(res, seed=ctx.options.seed)
        diff = res.rmse_exponential - res.rmse_hyperbolic
        lo, hi = bounds["rmse_difference"]
        by_amount, by_delay = amount_monotonicity(t, x, p_later, seed=ctx.options.seed)
        bounds |= {
            "monotonicity_amount": by_amount.share_ci,
            "monotonicity_delay": by_delay.share_ci,
        }
        row = {
            "better": res.better,
            # The label is supported only when the bootstrap interval of the error difference
            # excludes 0; otherwise the two curves fit the delays equally well.
            "better_supported": bool(lo > 0 or hi < 0) if np.isfinite(lo) else False,
            "k_exponential": res.k_exponential,
            "k_hyperbolic": res.k_hyperbolic,
            "rmse_exponential": res.rmse_exponential,
            "rmse_hyperbolic": res.rmse_hyperbolic,
            "rmse_difference": diff if np.isfinite(diff) else None,
            "monotonicity_amount": by_amount.share,
            "monotonicity_delay": by_delay.share,
            "n_delays": len(res.delays),
            "n_delays_bracketed": int(sum(s == "ok" for s in res.status)),
            "mean_p_later": float(np.nanmean(p_later)),
            "base_amount": res.base_amount,
        }
        row = with_intervals(row, bounds)
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
    from fit.analyses.intervals import fisher, with_intervals
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
        row = with_intervals(
            {
                "pearson": res.pearson,
                "spearman": res.spearman,
                "n_outcomes": res.n,
                "preference_run": preference,
            },
            {
                "pearson": fisher(res.pearson, res.n),
                "spearman": fisher(res.spearman, res.n, rank=True),
            },
        )
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
    from fit.analyses.intervals import fisher, slope_interval, with_intervals

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
        row = with_intervals(
            {
                "slope": res.slope,
                "pearson": res.pearson,
                "spearman": res.spearman,
                "intercept": res.intercept,
                "n_reversals": res.n,
                "base_run": base_run,
            },
            {
                "slope": slope_interval(res.strength, res.utility),
                "pearson": fisher(res.pearson, res.n),
                "spearman": fisher(res.spearman, res.n, rank=True),
            },
        )
        outputs.append(finish(ctx, rid, model, row, plot_corrigibility, res))
    return outputs
