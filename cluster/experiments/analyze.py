"""``valuescope analyze``: the paper's experiments, run end to end on a spec or a stored run.

Each analysis builds its outcome set and pair design from ``elicit.generators`` (package data),
asks it in derived runs through :func:`cluster.pipeline.run.run` (same models, mode and prompt as the
base spec; see ``cluster.experiments.common``), fits, reads utilities or pairwise probabilities back
by SQL, calls the pure function in ``fit.analyses`` and writes

- ``<root>/analyses/<analysis>/run_id=<run>/model=<model>/result.parquet``: one headline row
  per model (SQL view ``analysis_<analysis>``), plus detail tables (``analysis_<analysis>_<table>``);
- ``<root>/figures/run_id=<run>/model=<model>/<analysis>.png``.

Python API::

    from cluster.experiments.analyze import analyze, Options
    outputs = analyze("time-discounting", spec=spec, options=Options(n_amounts=20))
    outputs = analyze("completeness", run_id="quickstart-1a2b3c4d", root="results")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cluster.experiments.common import (
    AnalysisError,
    Base,
    Context,
    Options,
    Output,
    base_from_run,
    base_from_spec,
)
from cluster.spec import RunSpec

__all__ = ["ANALYSES", "AnalysisError", "Options", "Output", "analyze", "analyze_all"]


@dataclass(frozen=True)
class Analysis:
    """One analysis of ``valuescope analyze``."""

    name: str
    """CLI name (``time-discounting``); its tables and view use ``_`` for ``-``."""
    module: str
    """Module of its driver function (imported when it runs)."""
    function: str
    """Driver function: ``Context -> list[Output]``."""
    needs_base_run: bool
    """Reads the base run (a stored run, or the spec run first); otherwise asks only its own
    generated outcomes (a stored run then only supplies models, mode and prompt)."""
    summary: str
    """One line for ``--help``."""

    def driver(self) -> Callable[[Context], list[Output]]:
        import importlib

        fn: Callable[[Context], list[Output]] = getattr(
            importlib.import_module(self.module), self.function
        )
        return fn


_OUR_PACKAGES = ("storage", "elicit", "fit", "cluster")

_C, _V, _M = (
    "cluster.experiments.coherence",
    "cluster.experiments.values",
    "cluster.experiments.across_models",
)

ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in (
        Analysis("completeness", _C, "completeness", True, "decisiveness |2P−1| of the base run"),
        Analysis("robustness", _M, "robustness", True, "position bias, low mass, paraphrases"),
        Analysis("transitivity", _C, "transitivity", False, "cycle probability over triads"),
        Analysis("convergence", _M, "convergence", True, "similarity of the models' utilities"),
        Analysis("corrigibility", _V, "corrigibility", True, "utility of reversing preferences"),
        Analysis("expected-utility", _C, "expected_utility", False, "lotteries vs Σ p·U"),
        Analysis("instrumental", _C, "instrumental", False, "Bellman consistency of states"),
        Analysis("maximisation", _C, "maximisation", False, "free-form choice vs top utility"),
        Analysis("exchange-rates", _V, "exchange_rates", False, "μ = a·ln N + b, rates"),
        Analysis("political", _V, "political", False, "PCA of policy utilities with personas"),
        Analysis("time-discounting", _V, "time_discounting", False, "exponential or hyperbolic"),
        Analysis("power", _V, "power", False, "preference vs power-framing utilities"),
    )
}
"""Every analysis, in the order ``all`` runs them (base-run readers first)."""


def resolve(name: str) -> Analysis:
    """The analysis of a name (``_`` and ``-`` both accepted), or a clear error."""
    key = name.strip().lower().replace("_", "-")
    if key == "maximization":
        key = "maximisation"
    if key not in ANALYSES:
        raise AnalysisError(
            f"unknown analysis {name!r}; choose one of: {', '.join(ANALYSES)}, or all"
        )
    return ANALYSES[key]


def make_base(
    *, spec: RunSpec | None = None, run_id: str | None = None, root: str | None = None
) -> Base:
    """The base of an analysis: a spec, or a stored run under ``root``."""
    if (spec is None) == (run_id is None):
        raise AnalysisError("give either a spec or a run id")
    if run_id is not None:
        return base_from_run(root or "results", run_id)
    assert spec is not None
    if root is not None:
        spec = spec.model_copy(update={"root": root})
    return base_from_spec(spec)


def analyze(
    name: str,
    *,
    spec: RunSpec | None = None,
    run_id: str | None = None,
    root: str | None = None,
    options: Options | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[Output]:
    """Run one analysis on a spec or a stored run; returns one output per model.

    Args:
        name: analysis name (see :data:`ANALYSES`).
        spec: the base spec (models, mode, prompt, root; its outcomes for the analyses that
            sample base outcomes).
        run_id: a stored run to start from instead (its manifest's spec is used).
        root: results root (overrides the spec's; where a run id is looked up).
        options: sizes and settings (:class:`Options`).
        echo: receives one progress line per step (the CLI prints them).
    """
    analysis = resolve(name)
    base = make_base(spec=spec, run_id=run_id, root=root)
    ctx = Context(analysis.name, base, options or Options(), echo or (lambda _m: None))
    announce(ctx)
    return analysis.driver()(ctx)


def announce(ctx: Context) -> None:
    """Say the preset and how many prompts per model its design asks, before it runs."""
    from cluster.experiments.presets import planned_prompts

    n = planned_prompts(ctx.name, ctx.options, ctx.base)
    size = (
        f"{n:,} prompts per model in derived runs" if n is not None else "size set by the base run"
    )
    ctx.say(f"preset {ctx.options.preset}: {size}")


def analyze_all(
    *,
    spec: RunSpec | None = None,
    run_id: str | None = None,
    root: str | None = None,
    options: Options | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[list[Output], dict[str, str]]:
    """Every analysis in turn; one that fails does not stop the others.

    Returns:
        (outputs, analysis name → error message for those that failed or were skipped).
    """
    say = echo or (lambda _m: None)
    base = make_base(spec=spec, run_id=run_id, root=root)
    outputs: list[Output] = []
    failed: dict[str, str] = {}
    for analysis in ANALYSES.values():
        if analysis.name == "convergence" and len(base.spec.models) < 2:
            failed[analysis.name] = "skipped: needs at least 2 models"
            say(f"{analysis.name}: skipped (the spec has one model)")
            continue
        ctx = Context(analysis.name, base, options or Options(), say)
        try:
            announce(ctx)
            outputs.extend(analysis.driver()(ctx))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in _OUR_PACKAGES:
                raise
            failed[analysis.name] = str(exc)
            say(f"{analysis.name}: FAILED: {exc}")
    return outputs, failed
