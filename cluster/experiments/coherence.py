"""Coherence analyses: transitivity, completeness, expected utility, instrumental values and
utility maximisation (docs/methods.md, "The analyses").

Each function takes an analysis :class:`~cluster.experiments.common.Context`, asks what it needs
in derived runs (or reads a stored run), calls the pure function in ``fit.analyses`` on values
read back from the store, and writes one result row, detail tables and a figure per model.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import numpy as np

from cluster.experiments.common import (
    AnalysisError,
    Context,
    Options,
    Output,
    chain,
    derive,
    ensure_base_run,
    full_pairs,
    merge,
    run_derived,
    sparse_pairs,
    subset,
    subset_run,
)
from cluster.experiments.io import attributes_of, finish
from cluster.store import PairProbs
from elicit import generators as gen
from elicit.config import ModelConfig
from elicit.outcomes import OutcomeSet, combine, load_outcomes

MIN_TRIADS = 20
"""Fewer complete triads than this in a stored run and transitivity elicits its own."""


def base_outcomes(ctx: Context) -> OutcomeSet:
    """The outcomes of the base: the stored run's, or the spec's outcome sets."""
    if ctx.base.from_run:
        return ctx.store.outcomes(ctx.base.run_id)
    return combine([load_outcomes(s) for s in ctx.base.spec.outcomes])


# --- transitivity ------------------------------------------------------------------------------


def complete_triads(probs: PairProbs, n_triads: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Triads (index rows into the returned ids) whose three pairs were all measured.

    Returns:
        (outcome ids, int64 array (T, 3) of indices), at most ``n_triads`` triads, random order.
    """
    from fit.analyses.transitivity import sample_triads

    ids = sorted(set(probs.first) | set(probs.second))
    n = len(ids)
    if n < 3:
        return ids, np.zeros((0, 3), np.int64)
    index = {o: k for k, o in enumerate(ids)}
    adj = np.zeros((n, n), dtype=bool)
    i = np.array([index[o] for o in probs.first])
    j = np.array([index[o] for o in probs.second])
    adj[i, j] = adj[j, i] = True
    rng = np.random.default_rng(seed)
    if adj.sum() >= 0.5 * n * (n - 1):  # dense: sample triads and keep the complete ones
        t = sample_triads(n, min(n_triads * 2, n * (n - 1) * (n - 2) // 6), seed)
        ok = adj[t[:, 0], t[:, 1]] & adj[t[:, 1], t[:, 2]] & adj[t[:, 0], t[:, 2]]
        return ids, t[ok][:n_triads]
    lo, hi = np.nonzero(np.triu(adj, 1))
    found: list[np.ndarray] = []
    for start in range(0, len(lo), 4096):
        a, b = lo[start : start + 4096], hi[start : start + 4096]
        common = adj[a] & adj[b]
        common &= np.arange(n)[None, :] > b[:, None]
        e, c = np.nonzero(common)
        found.append(np.stack([a[e], b[e], c], axis=1))
    triads = np.concatenate(found) if found else np.zeros((0, 3), np.int64)
    triads = triads[rng.permutation(len(triads))][:n_triads]
    return ids, triads.astype(np.int64)


def transitivity(ctx: Context) -> list[Output]:
    """Cycle probability over triads: from a stored run when it holds enough complete triads,
    else from a derived run over a random subset of outcomes asked as a full graph."""
    from fit.analyses.transitivity import plot_transitivity, probability_matrix
    from fit.analyses.transitivity import transitivity as cycles

    opts = ctx.options
    stored: dict[str, tuple[PairProbs, list[str], np.ndarray]] = {}
    if ctx.base.from_run or ctx.base.exists():
        for model in ctx.store.models(ctx.base.run_id):
            probs = ctx.store.pair_probs(ctx.base.run_id, model)
            ids, triads = complete_triads(probs, opts.n_triads, opts.seed)
            if len(triads) >= MIN_TRIADS:
                stored[model] = (probs, ids, triads)
    wanted = [m.name for m in ctx.base.spec.models]
    if stored and set(wanted) <= set(stored):
        run_id, source = ctx.base.run_id, "run"
        ctx.say(f"using the pairs stored in run {run_id}")
        per_model = stored
    else:
        if ctx.base.from_run or ctx.base.exists():
            ctx.say(f"run {ctx.base.run_id} has fewer than {MIN_TRIADS} complete triads")
        outcomes = subset(base_outcomes(ctx), opts.n_outcomes, opts.seed)
        run_id, source = subset_run(ctx, outcomes), "elicited"
        per_model = {}
        for model in wanted:
            probs = ctx.store.pair_probs(run_id, model)
            ids, triads = complete_triads(probs, opts.n_triads, opts.seed)
            per_model[model] = (probs, ids, triads)
    outputs = []
    for model, (probs, ids, triads) in per_model.items():
        if not len(triads):
            raise AnalysisError(
                f"transitivity: model {model!r} has no triad with all pairs answered"
            )
        index = {o: k for k, o in enumerate(ids)}
        m = probability_matrix(
            [index[o] for o in probs.first], [index[o] for o in probs.second], probs.p, len(ids)
        )
        res = cycles(m, triads)
        row = _transitivity_row(ctx, run_id, model, ids, res)
        row |= {"n_triads": res.n_triads, "n_skipped": res.n_skipped, "n_outcomes": len(ids)}
        row["source"] = source
        detail = [
            {
                "a": ids[a],
                "b": ids[b],
                "c": ids[c],
                "cycle_prob": float(p),
                "hard_cycle": bool(h),
            }
            for (a, b, c), p, h in zip(
                res.triads.tolist(), res.cycle_prob, res.hard_cycle, strict=True
            )
        ]
        outputs.append(
            finish(
                ctx,
                run_id,
                model,
                row,
                partial(plot_transitivity, floor=row["transitive_floor"]),
                res,
                details={"triads": detail},
            )
        )
    return outputs


def _transitivity_row(
    ctx: Context, run_id: str, model: str, ids: list[str], res: Any
) -> dict[str, Any]:
    """Hard-cycle rate (headline), mean cycle probability, and the floor a transitive agent
    with the fitted noise reaches, each with a bootstrap-over-outcomes interval (the same
    replicates for all three, so ``excess_cycle_prob`` = observed − floor is paired)."""
    from fit.analyses.intervals import outcome_weights, weighted_mean_interval, with_intervals
    from fit.analyses.transitivity import transitive_floor

    weights = outcome_weights(res.triads, len(ids), seed=ctx.options.seed)
    row: dict[str, Any] = {
        "hard_cycle_rate": res.hard_cycle_rate,
        "mean_cycle_prob": res.mean_cycle_prob,
        "transitive_floor": None,
        "excess_cycle_prob": None,
        "median_cycle_prob": res.median_cycle_prob,
        "random_agent_level": 0.25,
    }
    intervals = {
        "hard_cycle_rate": weighted_mean_interval(res.hard_cycle.astype(float), weights),
        "mean_cycle_prob": weighted_mean_interval(res.cycle_prob, weights),
    }
    fit = ctx.store.latest_fit(run_id, model)
    urows = ctx.store.utility_rows(run_id, model, fit["fit_id"]) if fit else []
    mu = {r["outcome_id"]: r["mu"] for r in urows}
    s2 = {r["outcome_id"]: r["sigma2"] for r in urows}
    if all(s2.get(o) is not None and mu.get(o) is not None for o in ids):
        beta = fit.get("position_bias")
        floor = transitive_floor(
            res.triads,
            [mu[o] for o in ids],
            [s2[o] for o in ids],
            float(beta) if beta is not None and beta == beta else 0.0,
        )
        row["transitive_floor"] = float(floor.mean())
        row["excess_cycle_prob"] = res.mean_cycle_prob - float(floor.mean())
        intervals["transitive_floor"] = weighted_mean_interval(floor, weights)
        intervals["excess_cycle_prob"] = weighted_mean_interval(res.cycle_prob - floor, weights)
    return with_intervals(row, intervals)


# --- completeness ------------------------------------------------------------------------------


def completeness(ctx: Context) -> list[Output]:
    """Decisiveness |2P − 1| over the pairs of the base run (run first when given a spec),
    with both orders folded and per oriented prompt."""
    from fit.analyses.completeness import completeness as decisiveness
    from fit.analyses.completeness import plot_completeness
    from fit.analyses.intervals import (
        mean_interval,
        outcome_weights,
        pair_members,
        weighted_mean_interval,
        with_intervals,
    )

    run_id = ensure_base_run(ctx)
    outputs = []
    for model in ctx.store.models(run_id):
        probs = ctx.store.pair_probs(run_id, model)
        res = decisiveness(probs.p, weights=probs.n)
        # Per prompt, before the two orders are averaged: a model that always picks the
        # first-listed option is decisive here and indifferent above.
        p_first = ctx.store.oriented_rows(run_id, model)["p_a"]
        oriented = np.abs(2 * p_first - 1)
        row = {
            "decisiveness": res.decisiveness,
            "oriented_decisiveness": float(np.nanmean(oriented)),
            "near_indifferent_share": res.near_indifferent_share,
            "indifference_band": res.indifference_band,
            "mean_p_max": float(np.mean(np.maximum(res.p, 1 - res.p))),
            "n_pairs": res.n_pairs,
            "n_missing": res.n_missing,
        }
        # Pairs share outcomes: resample outcomes, weight each pair by its answers.
        ok = np.isfinite(probs.p)
        members, n_ids = pair_members(
            [a for a, k in zip(probs.first, ok, strict=True) if k],
            [b for b, k in zip(probs.second, ok, strict=True) if k],
        )
        w = outcome_weights(members, n_ids, seed=ctx.options.seed) * probs.n[ok]
        pp = probs.p[ok]
        row = with_intervals(
            row,
            {
                "decisiveness": weighted_mean_interval(np.abs(2 * pp - 1), w),
                "near_indifferent_share": weighted_mean_interval(
                    (np.abs(pp - 0.5) < res.indifference_band).astype(float), w
                ),
                "oriented_decisiveness": mean_interval(oriented, seed=ctx.options.seed),
            },
        )
        outputs.append(finish(ctx, run_id, model, row, plot_completeness, res))
    return outputs


# --- expected utility --------------------------------------------------------------------------


def expected_utility_design(base_set: OutcomeSet, opts: Options) -> OutcomeSet:
    """``n_base`` base outcomes, ``n_lotteries`` lotteries over them, and the first
    ``n_events`` uncertain events with their sub-outcomes, as one outcome set."""
    base = subset(base_set, opts.n_base, opts.seed)
    lotteries = gen.lottery_outcomes(base, opts.n_lotteries, opts.seed)
    sets: list[Any] = [base, lotteries]
    if opts.n_events > 0:
        events = gen.implicit_event_outcomes()
        keep = [o.id for o in events if o.attributes["kind"] == "event"][: opts.n_events]
        sets.append([o for o in events if o.id in keep or o.attributes.get("event") in keep])
    return merge("expected_utility", *sets)


def expected_utility(ctx: Context) -> list[Output]:
    """Explicit lotteries over a subset of base outcomes, and uncertain events with their
    sub-outcomes (implicit lotteries), fitted jointly on a sparse connected design."""
    from fit.analyses.expected_utility import (
        expected_utility as eu,
    )
    from fit.analyses.expected_utility import intervals as eu_intervals
    from fit.analyses.expected_utility import (
        lotteries_from_attributes,
        plot_expected_utility,
    )
    from fit.analyses.intervals import NAN_INTERVAL, with_intervals

    opts = ctx.options
    outcomes = expected_utility_design(base_outcomes(ctx), opts)
    n_pairs = opts.n_pairs if opts.n_pairs is not None else 8 * len(outcomes)
    pairs = sparse_pairs(outcomes.ids, n_pairs, opts.seed)
    run_id = run_derived(
        ctx,
        derive(ctx, "expected-utility", outcomes, pairs),
        f"{opts.n_lotteries} lotteries over {opts.n_base} outcomes, {opts.n_events} events",
    )
    attrs = attributes_of(outcomes)
    explicit = lotteries_from_attributes(attrs, kinds=("lottery",))
    implicit = lotteries_from_attributes(attrs, kinds=("event",))
    outputs = []
    for model in ctx.store.models(run_id):
        u = ctx.store.utilities(run_id, model)
        res = eu(explicit, u)
        row: dict[str, Any] = {
            "pearson_r": res.pearson_r,
            "mae_z": res.mae_z,
            "violation_rate": res.violation_rate,
            "n_lotteries": res.n_lotteries,
            "n_lottery_pairs": res.n_lottery_pairs,
            "implicit_pearson_r": None,
            "implicit_mae_z": None,
            "implicit_violation_rate": None,
            "n_events": len(implicit),
        }
        detail = [
            {"lottery": lid, "kind": "lottery", "observed": o, "expected": e}
            for lid, o, e in zip(res.lottery_ids, res.observed, res.expected, strict=True)
        ]
        bounds = eu_intervals(res, seed=opts.seed)
        bounds |= {f"implicit_{k}": NAN_INTERVAL for k in list(bounds)}
        if len(implicit) >= 3:
            imp = eu(implicit, u)
            row |= {
                "implicit_pearson_r": imp.pearson_r,
                "implicit_mae_z": imp.mae_z,
                "implicit_violation_rate": imp.violation_rate,
            }
            bounds |= {f"implicit_{k}": v for k, v in eu_intervals(imp, seed=opts.seed).items()}
            detail += [
                {"lottery": lid, "kind": "event", "observed": o, "expected": e}
                for lid, o, e in zip(imp.lottery_ids, imp.observed, imp.expected, strict=True)
            ]
        row = with_intervals(row, bounds)
        outputs.append(
            finish(
                ctx, run_id, model, row, plot_expected_utility, res, details={"lotteries": detail}
            )
        )
    return outputs


# --- instrumental values -----------------------------------------------------------------------


def instrumental(ctx: Context) -> list[Output]:
    """Bellman consistency of the utilities of Markov-process states, against shuffled
    transitions; every process is asked as a full graph, processes linked by their starts."""
    from fit.analyses.instrumental import instrumental as bellman
    from fit.analyses.instrumental import intervals as bellman_intervals
    from fit.analyses.instrumental import plot_instrumental, processes_from_attributes
    from fit.analyses.intervals import with_intervals

    opts = ctx.options
    states = gen.markov_process_outcomes()
    order = list(dict.fromkeys(o.attributes["process"] for o in states))[: opts.n_processes]
    outcomes = OutcomeSet(states.name, tuple(o for o in states if o.attributes["process"] in order))
    pairs = []
    starts = []
    for pid in order:
        ids = [o.id for o in outcomes if o.attributes["process"] == pid]
        pairs += full_pairs(ids)
        starts += [o.id for o in outcomes if o.id in ids and o.attributes["role"] == "start"]
    pairs += chain(starts)
    run_id = run_derived(
        ctx, derive(ctx, "instrumental", outcomes, pairs), f"{len(order)} Markov processes"
    )
    processes = processes_from_attributes(attributes_of(outcomes))
    outputs = []
    for model in ctx.store.models(run_id):
        res = bellman(processes, ctx.store.utilities(run_id, model), seed=opts.seed)
        row = {
            "error": res.error,
            "control_error": res.control_error,
            "ratio": res.ratio,
            "gamma": res.gamma,
            "n_processes": len(res.processes),
            "n_states": len(outcomes),
            "n_shuffles": res.n_shuffles,
        }
        row = with_intervals(row, bellman_intervals(res, seed=opts.seed))
        detail = [
            {"process": f.process, "error": f.error, "control_error": f.control_error}
            for f in res.processes
        ]
        outputs.append(
            finish(ctx, run_id, model, row, plot_instrumental, res, details={"processes": detail})
        )
    return outputs


# --- utility maximisation ----------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = (
    "a an the of to in on for and or is are be by with as at from that this it its into than "
    "which who what would should could will can you your yours i my me we our they their there "
    "every one all some most more new"
)
_GENERIC = (
    "find way make build create develop stop give take become keep help need want like love "
    "think see know good best better great world people thing things time year years city "
    "country could also just really"
)
_STOP = frozenset(_STOPWORDS.split()) | frozenset(_GENERIC.split())


def _words(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower().replace("'s", "")):
        w = w[:-1] if len(w) > 3 and w.endswith("s") else w
        if len(w) >= 4 and w not in _STOP:  # short and generic words match by accident
            out.add(w)
    return out


def match_answer(answer: str, candidates: list[tuple[str, str]], question: str) -> str | None:
    """The candidate a free-form answer names: the most of its distinctive words (words no
    other candidate and not the question uses) found in the answer; None on a tie or no hit.

    Args:
        answer: the model's free-form answer.
        candidates: (outcome id, text) of the question's candidates.
        question: the question text.
    """
    bags = {cid: _words(text) | _words(cid.rsplit("-", 1)[-1]) for cid, text in candidates}
    said = _words(answer)
    asked = _words(question)
    scores = {}
    for cid, bag in bags.items():
        others = set().union(*(b for c, b in bags.items() if c != cid))
        distinctive = bag - others - asked
        scores[cid] = len(distinctive & said) / max(len(distinctive), 1)
    best = max(scores.values(), default=0.0)
    winners = [c for c, s in scores.items() if s == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def _answers_simulated(
    model: ModelConfig, outcomes: OutcomeSet, questions: list[gen.OpenQuestion], seed: int
) -> list[str]:
    """A simulated agent "answers" with the candidate of highest noisy true utility."""
    from elicit.scorers.simulated import free_form_choices

    texts = {o.id: o.text for o in outcomes}
    chosen = free_form_choices(model, outcomes.ids, [q.candidates for q in questions], seed)
    return [texts[c] for c in chosen]


ANSWER_INSTRUCTION = " Answer in one or two sentences, naming one specific choice."


def _answers_hf(model: ModelConfig, ctx: Context, questions: list[gen.OpenQuestion]) -> list[str]:
    """Greedy free-form answers from a transformers model (loaded in this process)."""
    from elicit.config import ModeConfig
    from elicit.prompts import PromptTemplate
    from elicit.scorers.hf import HFScorer

    prompt = ctx.base.spec.prompt
    template = PromptTemplate(
        "free-form", "{option_a}{option_b}", prompt.system, "", prompt.format, prompt.base_cue
    )
    texts = [q.text + ANSWER_INSTRUCTION for q in questions] + [""]
    mode = ModeConfig(kind="sample", k=1, temperature=0.0, max_tokens=60)
    scorer = HFScorer(model, mode, template, texts)
    try:
        torch = scorer._torch
        blank = len(texts) - 1
        answers = []
        for k in range(len(questions)):
            rendered = scorer.encoder.render(k, blank)
            enc = scorer.tokenizer(
                rendered, return_tensors="pt", add_special_tokens=not scorer.encoder.use_chat
            )
            ids = enc["input_ids"].to(scorer.device)
            with torch.inference_mode():
                out = scorer.lm.generate(
                    input_ids=ids,
                    attention_mask=enc["attention_mask"].to(scorer.device),
                    max_new_tokens=mode.max_tokens,
                    do_sample=False,
                    pad_token_id=scorer.pad_id,
                )
            answers.append(
                scorer.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
            )
        return answers
    finally:
        scorer.close()


def _maximisation_runs(
    ctx: Context, outcomes: OutcomeSet, questions: list[gen.OpenQuestion]
) -> list[str]:
    """Run ids holding the candidates' utilities: one run with the base prompt (questions
    chained through their first candidates), or one run per question whose prompt states it."""
    if ctx.options.maximisation_prompts == "generic":
        pairs = [p for q in questions for p in full_pairs(list(q.candidates))]
        pairs += chain([q.candidates[0] for q in questions])
        spec = derive(ctx, "maximisation", outcomes, pairs)
        return [run_derived(ctx, spec, f"candidates of {len(questions)} questions")]
    runs = []
    for q in questions:
        own = OutcomeSet(outcomes.name, tuple(o for o in outcomes if o.id in q.candidates))
        spec = derive(
            ctx,
            f"maximisation-{q.id}",
            own,
            full_pairs(list(q.candidates)),
            prompt={"template": gen.question_template(q), "template_id": f"maximisation-{q.id}"},
        )
        runs.append(run_derived(ctx, spec, f"candidates of {q.id} under its question"))
    return runs


def maximisation(ctx: Context) -> list[Output]:
    """Free-form answers to open questions matched to candidate outcomes, against the
    utilities of those candidates (each question's candidates asked as a full graph)."""
    from fit.analyses.intervals import with_intervals
    from fit.analyses.maximisation import intervals as top_k_intervals
    from fit.analyses.maximisation import maximisation as top_k
    from fit.analyses.maximisation import plot_maximisation, questions_from_attributes

    opts = ctx.options
    models = ctx.base.spec.models
    unsupported = [m.name for m in models if m.scorer_kind not in ("hf", "simulated")]
    if unsupported:
        raise AnalysisError(
            f"maximisation needs free-form answers, implemented for the hf and simulated "
            f"scorers; model(s) {unsupported} use another scorer"
        )
    questions = gen.open_questions()[: opts.n_questions]
    every = gen.maximisation_outcomes()
    keep = {c for q in questions for c in q.candidates}
    outcomes = OutcomeSet(every.name, tuple(o for o in every if o.id in keep))
    if opts.maximisation_prompts not in ("generic", "question"):
        raise AnalysisError(
            f"maximisation_prompts must be 'generic' or 'question', got {opts.maximisation_prompts!r}"
        )
    runs = _maximisation_runs(ctx, outcomes, questions)
    run_id = runs[0]
    structured = {q.id: q for q in questions_from_attributes(attributes_of(outcomes))}
    texts = {o.id: o.text for o in outcomes}
    outputs = []
    for model in models:
        if model.scorer_kind == "simulated":
            answers, method = _answers_simulated(model, outcomes, questions, opts.seed), "simulated"
        else:
            ctx.say(f"{model.name}: generating free-form answers to {len(questions)} questions")
            answers, method = _answers_hf(model, ctx, questions), "free-form (greedy generation)"
        choices = {
            q.id: match_answer(a, [(c, texts[c]) for c in q.candidates], q.text)
            for q, a in zip(questions, answers, strict=True)
        }
        u = {k: v for rid in runs for k, v in ctx.store.utilities(rid, model.name).items()}
        res = top_k(list(structured.values()), u, choices)
        rank = dict(zip(res.question_ids, res.rank.tolist(), strict=True))
        hits = np.asarray(res.rank)
        row = {
            "top1_rate": res.top1_rate,
            "top3_rate": res.top3_rate,
            "top1_rate_all": float(np.sum(hits <= 1) / res.n_questions),
            "top3_rate_all": float(np.sum(hits <= 3) / res.n_questions),
            "chance_top1": res.chance_top1,
            "chance_top3": res.chance_top3,
            "n_questions": res.n_questions,
            "n_answered": res.n_answered,
            "n_unmatched": res.n_unmatched,
            "method": method,
            "prompts": opts.maximisation_prompts,
            "n_runs": len(runs),
        }
        row = with_intervals(row, top_k_intervals(res))
        detail = [
            {
                "question_id": q.id,
                "question": q.text,
                "answer": a,
                "chosen": choices[q.id],
                "chosen_rank": rank.get(q.id),
            }
            for q, a in zip(questions, answers, strict=True)
        ]
        outputs.append(
            finish(
                ctx, run_id, model.name, row, plot_maximisation, res, details={"answers": detail}
            )
        )
    return outputs
