"""``valuescope assembly``: target preferences from a simulated citizen assembly.

A panel of personas is drawn from the panel file (:mod:`elicit.panel`); the run's model is
asked every pair of the run's outcomes (or a sparse connected design) once per persona, in a
derived run ``<run>-assembly-<persona>-<hash>`` whose system message speaks in that persona's
voice (wording, chat formatting and both option orders are the run's own, and a rerun resumes).
The members' probabilities are aggregated per pair (mean, or majority vote) into the target
P(i ≻ j), and Thurstonian target utilities are fitted to it.

Tables (``<root>/analyses/assembly/run_id=<run>/model=<model>/``, views for ``valuescope sql``):
``analysis_assembly`` (one row), ``analysis_assembly_target`` (per pair: ``outcome_a``,
``outcome_b``, ``p_target`` = P(a ≻ b), ``p_mean``, ``vote_share``, ``n_members``),
``analysis_assembly_utilities`` (per outcome: target ``mu``, ``sigma2`` and ``lean_loading``,
the direction along which right-leaning members' utilities differ from left-leaning ones') and
``analysis_assembly_personas`` (per member: attributes, lean, derived run, agreement with the
target).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.experiments.common import (
    AnalysisError,
    Base,
    Context,
    Options,
    base_from_run,
    derive,
    full_pairs,
    run_derived,
    sparse_pairs,
)
from cluster.experiments.io import finish
from cluster.spec import RunSpec
from elicit.config import ModelConfig
from elicit.outcomes import Outcome, OutcomeSet
from fit.analyses.control import Aggregate
from storage import RunLayout
from storage.writer import read_table

logger = logging.getLogger(__name__)

ANALYSIS = "assembly"


@dataclass(frozen=True)
class AssemblyOptions:
    """Settings of one assembly."""

    personas: int = 20
    """Panel members drawn."""
    aggregate: Aggregate = "mean"
    """``mean`` of the members' probabilities, or ``majority`` vote (1, 0, ½ on a tie)."""
    panel: str | None = None
    """Panel file (null = the packaged ``elicit/data/assembly.yaml``)."""
    seed: int = 0
    """Seed of the members drawn and of a sparse pair design."""
    n_pairs: int | None = None
    """Ask a connected random design of about this many pairs instead of the full graph."""
    model: str | None = None
    """Model of the run that answers as the personas (default: the run's first model)."""
    spread: float = 0.5
    """Simulated agents only: how far a member's utilities move from the agent's (probit sd)."""


@dataclass
class AssemblyOutput:
    """What an assembly produced."""

    run_id: str
    model: str
    row: dict[str, Any]
    target: list[dict[str, Any]]
    personas: list[dict[str, Any]]


def pick_model(spec: RunSpec, name: str | None, run_id: str) -> ModelConfig:
    """The model of a run to work with: the one named, else the first."""
    if name is None:
        return spec.models[0]
    for model in spec.models:
        if model.name == name:
            return model
    names = ", ".join(m.name for m in spec.models)
    raise AnalysisError(f"run {run_id!r} has no model {name!r}; its models: {names}")


def run_outcomes(base: Base) -> OutcomeSet:
    """The outcomes of a stored run, in the run's order (the order pair ids are built on)."""
    layout = RunLayout(base.root, base.run_id)
    if not base.root.exists(layout.outcomes):
        raise AnalysisError(f"run {base.run_id!r} has no outcomes table ({layout.outcomes})")
    import json

    table = read_table(base.root, layout.outcomes)
    ids = table.column("outcome_id").to_pylist()
    texts = table.column("text").to_pylist()
    attrs = table.column("attributes").to_pylist()
    return OutcomeSet(
        base.run_id,
        tuple(
            Outcome(str(o), str(t), json.loads(a) if a else {})
            for o, t, a in zip(ids, texts, attrs, strict=True)
        ),
    )


def run_assembly(
    root: str,
    run_id: str,
    options: AssemblyOptions,
    *,
    echo: Callable[[str], None] = lambda _msg: None,
) -> AssemblyOutput:
    """Ask the panel, aggregate its answers into a target, fit target utilities, store them.

    Raises:
        AnalysisError: unknown run or model, fewer than 2 outcomes.
        elicit.panel.AssemblyError: a bad panel file or persona count.
    """
    from elicit.panel import load_panel, persona_model, sample_personas
    from fit.analyses.control import aggregate_panel, fit_target, lean, lean_axis

    base = base_from_run(root, run_id)
    model = pick_model(base.spec, options.model, run_id)
    outcomes = run_outcomes(base)
    if len(outcomes) < 2:
        raise AnalysisError(f"run {run_id!r} has {len(outcomes)} outcome(s); an assembly needs 2+")
    panel = load_panel(options.panel)
    members = sample_personas(panel, options.personas, options.seed)
    ids = outcomes.ids
    pairs = (
        full_pairs(ids)
        if options.n_pairs is None
        else sparse_pairs(ids, options.n_pairs, options.seed)
    )
    ctx = Context(ANALYSIS, base, Options(seed=options.seed), echo=echo)
    ctx.say(
        f"{len(members)} personas from panel {panel.name!r} × {len(pairs)} pairs "
        f"({2 * len(pairs) * len(members):,} prompts) asked of {model.name}"
    )
    system = base.spec.prompt.system
    p = np.full((len(members), len(pairs)), np.nan)
    member_mu = np.full((len(members), len(ids)), np.nan)
    member_runs = []
    for k, person in enumerate(members):
        spec = derive(
            ctx,
            f"assembly-{person.id}",
            outcomes,
            pairs,
            prompt={"system": person.system(system), "template_id": f"assembly-{person.id}"},
            models=[persona_model(model, person, list(ids), index=k, spread=options.spread)],
        )
        politics = person.values.get("politics")
        rid = run_derived(ctx, spec, f"{person.id}" + (f" ({politics})" if politics else ""))
        member_runs.append(rid)
        probs = ctx.store.pair_probs(rid, model.name).lookup()
        p[k] = [probs.get(pair, np.nan) for pair in pairs]
        try:
            mu = ctx.store.utilities(rid, model.name)
        except AnalysisError:
            mu = {}
        member_mu[k] = [mu.get(o, np.nan) for o in ids]
    target = aggregate_panel(p, options.aggregate)
    index = outcomes.index()
    i = np.array([index[a] for a, _ in pairs], dtype=np.int64)
    j = np.array([index[b] for _, b in pairs], dtype=np.int64)
    mu_t, s2_t = fit_target(i, j, target.p, len(ids))
    leans = np.array([m.lean for m in members])
    complete = np.all(np.isfinite(member_mu), axis=1)
    axis = lean_axis(member_mu[complete], leans[complete]) if complete.sum() >= 2 else None
    own_lean = None
    if axis is not None:
        try:
            own = ctx.store.utilities(run_id, model.name)
            vec = np.array([own.get(o, np.nan) for o in ids])
            own_lean = lean(vec, axis) if np.all(np.isfinite(vec)) else None
        except AnalysisError:
            own_lean = None
    decided = target.p != 0.5
    row: dict[str, Any] = {
        "aggregate": options.aggregate,
        "panel": panel.name,
        "n_personas": len(members),
        "n_pairs": len(pairs),
        "n_outcomes": len(ids),
        "decided_share": float(decided.mean()),
        "mean_vote_margin": float(np.mean(np.abs(2 * target.vote_share - 1))),
        "mean_member_agreement": float(np.nanmean(target.member_agreement)),
        "lean_target": lean(mu_t, axis) if axis is not None else None,
        "lean_model": own_lean,
        "seed": options.seed,
    }
    target_rows = [
        {
            "outcome_a": a,
            "outcome_b": b,
            "p_target": float(target.p[k]),
            "p_mean": float(target.p_mean[k]),
            "vote_share": float(target.vote_share[k]),
            "n_members": int(target.n_members[k]),
        }
        for k, (a, b) in enumerate(pairs)
    ]
    utility_rows = [
        {
            "outcome_id": o,
            "mu": float(mu_t[k]),
            "sigma2": float(s2_t[k]),
            "lean_loading": float(axis[k]) if axis is not None else None,
        }
        for k, o in enumerate(ids)
    ]
    persona_rows = [
        {
            "persona": m.id,
            "lean": m.lean,
            "attributes": m.values,
            "description": m.description,
            "member_run": member_runs[k],
            "agreement": float(target.member_agreement[k]),
        }
        for k, m in enumerate(members)
    ]
    finish(
        ctx,
        run_id,
        model.name,
        row,
        None,
        None,
        details={"target": target_rows, "utilities": utility_rows, "personas": persona_rows},
    )
    return AssemblyOutput(run_id, model.name, row, target_rows, persona_rows)
