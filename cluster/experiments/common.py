"""Plumbing shared by the analyses of ``valuescope analyze``: the run an analysis starts from,
its options, and derived runs over generated outcome sets (reading results back and writing
result tables and figures is in ``cluster.experiments.io``).

An analysis starts from a *base*: a spec (file or flags) or a stored run (its spec is read back
from the manifest). Whatever it has to ask is asked in a *derived run*: the base spec with its
own name ``<base run id>-<suffix>``, its generated outcome set and pair list written to
``<root>/runs/<run_id>/inputs/`` (so the run is reproducible and resumable), and design
``pairs``. The run id is the name plus a hash of everything that decides the answers, so
rerunning an analysis resumes its runs and changing a setting starts new ones.

Results go to ``<root>/analyses/<analysis>/run_id=<run>/model=<model>/<table>.parquet`` (a
one-row ``result`` table per model plus optional detail tables, ad-hoc Arrow schemas, written
atomically) and figures to ``<root>/figures/run_id=<run>/model=<model>/<analysis>.png``; the
catalog exposes the tables as ``analysis_<analysis>`` views.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cluster.errors import ClusterError
from cluster.spec import DesignConfig, RunSpec
from cluster.store import RunStore
from elicit.config import ModelConfig
from elicit.outcomes import Outcome, OutcomeSet
from storage import Root, RunLayout
from storage.manifest import read_manifest, spec_hash

logger = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]
"""Unordered pairs of outcome ids to ask."""


class AnalysisError(ClusterError):
    """An analysis cannot run: unknown name, missing run, unusable inputs."""


@dataclass(frozen=True)
class Options:
    """Sizes and settings of the analyses; each analysis reads the fields it needs.

    Defaults keep every analysis to a few hundred prompts per model (a small CPU model answers
    10–30 prompts/s); raise them to approach the paper's designs.
    """

    preset: str = "quick"
    """The design preset these options came from (``quick`` or ``paper``;
    ``cluster.experiments.presets``); recorded, the sizes below decide."""
    seed: int = 0
    """Seed of every random choice (outcome subsets, triads, lotteries, pairs, reversals)."""
    n_outcomes: int = 12
    """Base outcomes sampled for transitivity triads, paraphrase and power runs."""
    n_triads: int = 1000
    """Triads scored by transitivity (at most all triads of the outcomes asked)."""
    n_base: int = 6
    """Base outcomes the lotteries of expected utility are built from."""
    n_lotteries: int = 10
    """Explicit lotteries (expected utility)."""
    n_events: int = 3
    """Uncertain events with their sub-outcomes, for implicit expected utility (0 = none)."""
    n_processes: int = 6
    """Markov processes (instrumental values)."""
    n_questions: int = 8
    """Open questions (utility maximisation)."""
    maximisation_prompts: str = "generic"
    """How maximisation asks each question's candidates: ``generic`` (our variant: the base
    prompt, every question's candidates in one run) or ``question`` (the paper's: the question
    itself in the prompt, one run per question)."""
    groups: tuple[str, ...] = ("countries", "animals")
    """Entity groups of the exchange-rate ladders."""
    n_entities: int = 3
    """Entities per group (the first ones listed in the package data)."""
    ns: tuple[int, ...] = (1, 10, 100, 1000)
    """Quantities N of the exchange-rate ladders."""
    money: tuple[float, ...] = (10.0, 1000.0, 100000.0)
    """Money anchors fitted with the exchange ladders (dollars)."""
    pivot: str | None = None
    """Entity exchange rates are expressed in (default: the first valid one)."""
    framing: bool = False
    """Exchange rates: also ask the ladders under the mutual-exclusivity framing and report
    both spreads side by side (doubles the prompts)."""
    n_policies: int = 10
    """Policy outcomes (political values)."""
    personas: tuple[str, ...] | int = 4
    """Reference personas: a count (the first ones) or persona ids."""
    persona_question: str = "system"
    """How a persona is asked (political): ``system`` (our variant: the persona instruction is
    the system message, the question unchanged) or ``question`` (the paper's: "Which of these
    two policies would <persona> prefer?")."""
    delays: tuple[int, ...] = (1, 3, 6, 12, 24, 60)
    """Delays in months (time discounting)."""
    n_amounts: int = 15
    """Later amounts per delay, geometric over $500–$30,000 (time discounting)."""
    n_reversals: int = 20
    """Preference-reversal outcomes (corrigibility)."""
    paraphrases: bool = True
    """Robustness: elicit the paraphrased wordings (off = position bias and answer quality only)."""
    paraphrase_derived: bool = False
    """Robustness: also ask every derived run of the base that uses the base wording (exchange
    rates, time discounting, lotteries…; run those analyses first) under the paraphrases, and
    report each one's rank agreement (3× their prompts)."""
    n_pairs: int | None = None
    """Cap on the pairs of the sparse designs (expected utility, exchange rates); null = the
    analysis's default."""


@dataclass
class Base:
    """What an analysis starts from: a spec and the id of its run (which may not exist yet)."""

    spec: RunSpec
    """The user's spec (root resolved), or a stored run's spec read back from its manifest."""
    run_id: str
    """The base run id: prefix of every derived run and ``base_run_id`` of every result."""
    from_run: bool
    """True when the target named a stored run rather than a spec."""

    @property
    def root(self) -> Root:
        return Root(self.spec.root)

    def exists(self) -> bool:
        """Whether the base run has been run (its manifest exists)."""
        return read_manifest(RunLayout(self.root, self.run_id)) is not None


def base_from_run(root: str, run_id: str) -> Base:
    """The base of a stored run: its manifest's spec, on this root."""
    r = Root(root)
    r.check_readable()
    try:
        manifest = read_manifest(RunLayout(r, run_id))
    except Exception as exc:  # a run id that is not a valid path component
        raise AnalysisError(f"{run_id!r} is neither a spec file nor a run id ({exc})") from None
    if manifest is None:
        known = [m.run_id for m in _manifests(r)]
        hint = (
            f"; runs in this root: {', '.join(known[-8:])}" if known else "; the root has no runs"
        )
        raise AnalysisError(
            f"{run_id!r} is neither a spec file nor a run in {root!r}{hint} (pass --root, or a "
            "spec file / flags such as --model to start from a spec)"
        )
    spec = RunSpec.model_validate({**manifest.spec, "root": root, "run_id": run_id})
    return Base(spec=spec, run_id=run_id, from_run=True)


def base_from_spec(spec: RunSpec) -> Base:
    return Base(spec=spec, run_id=spec.resolved_run_id(), from_run=False)


def _manifests(root: Root) -> list[Any]:
    from storage.manifest import list_manifests

    return sorted(list_manifests(root), key=lambda m: m.created_at)


@dataclass
class Context:
    """One analysis invocation."""

    name: str
    """Analysis name (CLI form, e.g. ``time-discounting``)."""
    base: Base
    options: Options
    echo: Callable[[str], None] = field(default=lambda _msg: None)
    """Where progress lines go (the CLI prints them to standard error)."""

    @property
    def key(self) -> str:
        """Folder / view name of the analysis (``time_discounting``)."""
        return self.name.replace("-", "_")

    @property
    def root(self) -> Root:
        return self.base.root

    @cached_property
    def store(self) -> RunStore:
        """The results root's run store, shared by everything this invocation reads."""
        return RunStore(self.base.root)

    def say(self, msg: str) -> None:
        logger.info("%s: %s", self.name, msg)
        self.echo(f"{self.name}: {msg}")


@dataclass(frozen=True)
class Output:
    """One result row written by an analysis."""

    analysis: str
    run_id: str
    model: str
    row: dict[str, Any]
    figure: str | None


# --- outcome sets and designs ------------------------------------------------------------------


def subset(outcomes: OutcomeSet, k: int, seed: int) -> OutcomeSet:
    """``k`` outcomes drawn at random (all when k >= N), kept in their original order."""
    if k >= len(outcomes):
        return outcomes
    if k < 2:
        raise AnalysisError(f"need at least 2 outcomes, got a subset size of {k}")
    pick = np.sort(np.random.default_rng(seed).choice(len(outcomes), size=k, replace=False))
    return OutcomeSet(outcomes.name, tuple(outcomes.outcomes[i] for i in pick))


def merge(name: str, *sets: OutcomeSet | Sequence[Outcome]) -> OutcomeSet:
    """One outcome set from several (ids must be unique across them)."""
    items: list[Outcome] = [o for s in sets for o in s]
    ids = [o.id for o in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise AnalysisError(f"{name}: outcome ids repeated across sets: {dupes[:5]}")
    return OutcomeSet(name, tuple(items))


def full_pairs(ids: Sequence[str]) -> Pairs:
    """Every unordered pair of the ids."""
    i, j = np.triu_indices(len(ids), k=1)
    return [(ids[a], ids[b]) for a, b in zip(i.tolist(), j.tolist(), strict=True)]


def chain(ids: Sequence[str]) -> Pairs:
    """Consecutive pairs, linking groups that are otherwise asked only among themselves."""
    return [(ids[k], ids[k + 1]) for k in range(len(ids) - 1)]


def sparse_pairs(ids: Sequence[str], n_pairs: int, seed: int) -> Pairs:
    """A connected random design of about ``n_pairs`` pairs: a random cycle through every
    outcome, topped up with random distinct pairs (the full graph when that is smaller)."""
    n = len(ids)
    total = n * (n - 1) // 2
    if n_pairs >= total:
        return full_pairs(ids)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    lo = np.minimum(order, np.roll(order, -1))
    hi = np.maximum(order, np.roll(order, -1))
    chosen = set(zip(lo.tolist(), hi.tolist(), strict=True)) if n > 2 else {(0, 1)}
    i, j = np.triu_indices(n, k=1)
    for k in rng.permutation(total):
        if len(chosen) >= n_pairs:
            break
        chosen.add((int(i[k]), int(j[k])))
    return [(ids[a], ids[b]) for a, b in sorted(chosen)]


def dedupe(pairs: Pairs) -> Pairs:
    """Pairs with repeats (in either order) removed, first occurrence kept."""
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in pairs:
        key = frozenset((a, b))
        if a != b and key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


# --- derived runs ------------------------------------------------------------------------------


def _outcomes_yaml(outcomes: OutcomeSet) -> bytes:
    data = {
        "name": outcomes.name,
        "description": outcomes.description or "generated by valuescope analyze",
        "outcomes": [
            {"id": o.id, "text": o.text, **({"attributes": o.attributes} if o.attributes else {})}
            for o in outcomes
        ],
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


def _pairs_csv(pairs: Pairs) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["outcome_a", "outcome_b"])
    writer.writerows(pairs)
    return buf.getvalue().encode()


def _input_path(root: Root, layout: RunLayout, name: str, data: bytes) -> str:
    """Write a generated input into the run folder; returns a local path the run can read."""
    target = layout.inputs(name)
    if not root.exists(target):
        root.write_atomic(target, data)
    if root.is_local:
        return target
    # Outcome and pair files are read with local-file readers: keep a local copy as well.
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    local = cache / "valuescope" / "inputs" / layout.run_id / name
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    return str(local)


def derive(
    ctx: Context,
    suffix: str,
    outcomes: OutcomeSet,
    pairs: Pairs,
    *,
    prompt: dict[str, Any] | None = None,
    models: Sequence[ModelConfig] | None = None,
) -> RunSpec:
    """The spec of a derived run: the base spec with its own name, outcomes and pairs.

    Args:
        ctx: the analysis context.
        suffix: added to the base run id to name the run (``<base>-<suffix>-<hash>``).
        outcomes: the outcome set to ask about (written to the run's ``inputs/``).
        pairs: unordered pairs of outcome ids to ask (design ``pairs``).
        prompt: fields of the prompt section to override (template, template_id, system).
        models: the models to ask (default: every model of the base spec).
    """
    pairs = dedupe(pairs)
    if not pairs:
        raise AnalysisError(f"{ctx.name}: no pairs to ask")
    known = {o.id for o in outcomes}
    unknown = sorted({x for p in pairs for x in p if x not in known})
    if unknown:
        raise AnalysisError(f"{ctx.name}: pairs name unknown outcomes {unknown[:5]}")
    base = ctx.base.spec
    update: dict[str, Any] = {
        "name": f"{ctx.base.run_id}-{suffix}",
        "run_id": None,
        "outcomes": ["generated"],
        "design": DesignConfig(kind="pairs", pairs_file="generated"),
    }
    if prompt:
        update["prompt"] = base.prompt.model_copy(update=prompt)
    if models is not None:
        update["models"] = list(models)
    draft = base.model_copy(update=update)
    outcome_bytes = _outcomes_yaml(outcomes)
    pair_bytes = _pairs_csv(pairs)
    key = spec_hash(
        {"spec": draft.content(), "outcomes": outcome_bytes.decode(), "pairs": pair_bytes.decode()}
    )
    run_id = f"{draft.name}-{key[:8]}"
    root = ctx.root
    layout = RunLayout(root, run_id)
    outcomes_file = _input_path(root, layout, "outcomes.yaml", outcome_bytes)
    pairs_file = _input_path(root, layout, "pairs.csv", pair_bytes)
    spec = draft.model_copy(
        update={
            "run_id": run_id,
            "outcomes": [outcomes_file],
            "design": DesignConfig(kind="pairs", pairs_file=pairs_file),
        }
    )
    # Validate the whole spec again (model_copy does not).
    return RunSpec.model_validate(spec.model_dump())


def run_derived(ctx: Context, spec: RunSpec, what: str) -> str:
    """Run (or resume) a derived run with its fit; returns its run id."""
    from cluster.pipeline.run import run

    with open(spec.design.pairs_file or "", encoding="utf-8") as f:
        n_pairs = sum(1 for _ in f) - 1
    per_pair = 2 if spec.prompt.both_orders else 1
    ctx.say(
        f"{what}: {n_pairs} pairs ({per_pair * n_pairs} prompts per model, "
        f"{len(spec.models)} model(s)) in run {spec.run_id}"
    )
    run(spec)
    ctx.store.refresh()  # the derived run's tables and manifest landed
    assert spec.run_id is not None
    return spec.run_id


def subset_run(ctx: Context, outcomes: OutcomeSet) -> str:
    """A full graph over a subset of the base outcomes, asked with the base prompt.

    Transitivity, power (its preference side) and robustness (the default wording) ask the same
    questions, so they share this run: with the same subset size and seed it is asked once.
    """
    spec = derive(ctx, "subset", outcomes, full_pairs(outcomes.ids))
    return run_derived(ctx, spec, f"full graph over {len(outcomes)} base outcomes")


def ensure_base_run(ctx: Context) -> str:
    """The base run id, running the base spec first when it was given as a spec."""
    from cluster.pipeline.run import run

    if ctx.base.from_run:
        return ctx.base.run_id
    spec = ctx.base.spec
    ctx.say(
        f"running the spec itself (run {ctx.base.run_id}, design {spec.design.kind}; "
        "resumes if it exists)"
    )
    run(spec)
    ctx.store.refresh()
    return ctx.base.run_id
