"""Analysis commands of the CLI: ``analyze`` (the paper's experiments) and ``report`` (one HTML
page per run). Nothing heavy is imported until a command runs."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

from cluster.cli.options import build_spec, spec_options
from cluster.errors import SpecError

ANALYSIS_NAMES = (
    "transitivity, completeness, expected-utility, instrumental, maximisation, exchange-rates, "
    "political, time-discounting, power, corrigibility, convergence, robustness"
)


def _spec_params() -> list[click.Parameter]:
    """The flags of ``valuescope run`` (``--model``, ``--root``…), without its SPEC argument."""
    probe = spec_options(lambda spec: None)
    params: list[click.Parameter] = probe.__click_params__  # type: ignore[attr-defined]
    return [p for p in params if p.name != "spec_file"]


def _ints(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(x) for x in text.split(",") if x.strip())


def _floats(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(x) for x in text.split(",") if x.strip())


def _words(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


_OPTION_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--preset", {"help": "Design preset: quick (CPU quickstart) or paper (the paper's sizes)."}),
    ("--seed", {"type": int, "help": "Seed of every random choice (subsets, triads, pairs)."}),
    ("--n-outcomes", {"type": int, "help": "Base outcomes for triads, paraphrases, power [12]."}),
    ("--n-triads", {"type": int, "help": "Triads scored by transitivity [1000, capped]."}),
    ("--n-base", {"type": int, "help": "Base outcomes the lotteries use [6]."}),
    ("--n-lotteries", {"type": int, "help": "Explicit lotteries [10]."}),
    ("--n-events", {"type": int, "help": "Uncertain events, implicit lotteries [3]; 0 = none."}),
    ("--n-processes", {"type": int, "help": "Markov processes (instrumental) [6 of 10]."}),
    ("--n-questions", {"type": int, "help": "Open questions (maximisation) [8 of 15]."}),
    ("--groups", {"help": "Exchange-rate groups, comma-separated [countries,animals]."}),
    ("--n-entities", {"type": int, "help": "Entities per exchange-rate group [3]."}),
    ("--ns", {"help": "Quantities N of the ladders, comma-separated [1,10,100,1000]."}),
    ("--money", {"help": "Money anchors in dollars, comma-separated [10,1000,100000]."}),
    ("--pivot", {"help": "Entity exchange rates are expressed in [first valid]."}),
    ("--n-policies", {"type": int, "help": "Policy outcomes (political) [10 of 32]."}),
    ("--personas", {"help": "Reference personas: a count or comma-separated ids [4]."}),
    ("--delays", {"help": "Delays in months, comma-separated [1,3,6,12,24,60]."}),
    ("--n-amounts", {"type": int, "help": "Later amounts per delay [15]."}),
    ("--n-reversals", {"type": int, "help": "Preference reversals (corrigibility) [20]."}),
    ("--n-pairs", {"type": int, "help": "Pairs of the sparse designs [8 per outcome]."}),
    (
        "--paraphrases/--no-paraphrases",
        {"default": None, "help": "Robustness: ask the paraphrased wordings [on]."},
    ),
    (
        "--paraphrase-derived/--no-paraphrase-derived",
        {"default": None, "help": "Robustness: paraphrase the derived runs too [off]."},
    ),
    (
        "--framing/--no-framing",
        {"default": None, "help": "Exchange rates: add the mutual-exclusivity framing [off]."},
    ),
    ("--persona-question", {"help": "Political personas: system or question [system]."}),
    ("--maximisation-prompts", {"help": "Maximisation: generic or question [generic]."}),
]


def _options(values: dict[str, Any]) -> Any:
    from cluster.experiments.presets import options_for

    given: dict[str, Any] = {}
    for key in ("seed", "n_outcomes", "n_triads", "n_base", "n_lotteries", "n_events"):
        if values.get(key) is not None:
            given[key] = values[key]
    for key in ("n_processes", "n_questions", "n_entities", "n_policies", "n_amounts"):
        if values.get(key) is not None:
            given[key] = values[key]
    for key in ("n_reversals", "n_pairs", "pivot", "paraphrases", "paraphrase_derived"):
        if values.get(key) is not None:
            given[key] = values[key]
    for key in ("framing", "persona_question", "maximisation_prompts"):
        if values.get(key) is not None:
            given[key] = values[key]
    for key, parse in (("groups", _words), ("ns", _ints), ("money", _floats), ("delays", _ints)):
        parsed = parse(values.get(key))
        if parsed is not None:
            given[key] = parsed
    personas = values.get("personas")
    if personas is not None:
        given["personas"] = int(personas) if personas.strip().isdigit() else _words(personas)
    return options_for(values.get("preset"), given)


def analyze_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``[SPEC|RUN]``, the flags of ``valuescope run`` and the analysis sizes; passes ``base``
    (dict with ``spec`` or ``run_id`` and ``root``) and ``options``."""
    spec_params = _spec_params()
    spec_names = {p.name for p in spec_params}

    @functools.wraps(func)
    def wrapper(target: str | None, **kwargs: Any) -> Any:
        flags = {k: kwargs.pop(k) for k in list(kwargs) if k in spec_names}
        option_values = {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTION_KEYS}
        options = _options(option_values)
        is_file = target is not None and (
            os.path.exists(target) or target.endswith((".yaml", ".yml", ".json"))
        )
        if target is None or is_file:
            base = {"spec": build_spec(target, **flags), "root": flags.get("root")}
        else:
            extra = sorted(k for k, v in flags.items() if v and k not in ("root", "progress"))
            if extra:
                raise SpecError(
                    f"{target!r} names a stored run, whose spec is fixed; flags "
                    f"{[_FLAG_NAMES.get(k, '--' + k.replace('_', '-')) for k in extra]} apply to "
                    "a SPEC only"
                )
            base = {"run_id": target, "root": flags.get("root") or "results"}
        return func(base=base, options=options, **kwargs)

    for decl, attrs in reversed(_OPTION_FLAGS):
        wrapper = click.option(decl, **attrs)(wrapper)
    wrapper.__click_params__.extend(spec_params)  # type: ignore[attr-defined]
    return click.argument("target", metavar="[SPEC|RUN]", required=False)(wrapper)


_OPTION_KEYS = {
    decl.split("/")[0].removeprefix("--").replace("-", "_") for decl, _ in _OPTION_FLAGS
}


_FLAG_NAMES = {"models": "--model", "outcome_sets": "--outcomes"}


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _print_outputs(outputs: list[Any], root: str) -> None:
    import pyarrow as pa

    from cluster.cli.display import echo_table

    by_analysis: dict[str, list[Any]] = {}
    for out in outputs:
        by_analysis.setdefault(out.analysis, []).append(out)
    for name, outs in by_analysis.items():
        # One row per metric, one column per model: headline rows are wide and few.
        rows = [{"run_id": o.run_id, **o.row} for o in outs]
        metrics = list(dict.fromkeys(k for r in rows for k in r))
        # An estimate and its `<name>_lo` / `<name>_hi` interval print as one cell.
        bounded = {k for k in metrics if f"{k}_lo" in metrics and f"{k}_hi" in metrics}
        shown = [k for k in metrics if not (k[-3:] in ("_lo", "_hi") and k[:-3] in bounded)]
        columns = {"metric": [f"{k} [95% CI]" if k in bounded else k for k in shown]}
        for o, r in zip(outs, rows, strict=True):
            columns[o.model] = [
                _show_bounded(r, k) if k in bounded else _show(r.get(k)) for k in shown
            ]
        echo_table(pa.table(columns), title=name)
        for o in outs:
            if o.figure:
                click.echo(f"figure: {o.figure}")
    if by_analysis:
        view = "analysis_" + next(iter(by_analysis)).replace("-", "_")
        click.echo(f'\nQuery: valuescope sql "SELECT * FROM {view}" --root {root}')


def _show_bounded(row: dict[str, Any], key: str) -> str | None:
    value, lo, hi = row.get(key), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is None or hi is None:
        return _show(value)
    return f"{_show(value)} [{_show(lo)}, {_show(hi)}]"


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def register(cli: click.Group) -> None:
    """Add ``analyze`` and ``report`` to the ``valuescope`` group."""

    @cli.command(context_settings={"max_content_width": 100})
    @click.argument("analysis", metavar="NAME")
    @analyze_options
    def analyze(analysis: str, base: dict[str, Any], options: Any) -> None:
        """Run an analysis of the paper (or `all`) on a SPEC or a stored RUN.

        NAME is one of: transitivity, completeness, expected-utility, instrumental,
        maximisation, exchange-rates, political, time-discounting, power, corrigibility,
        convergence, robustness, or all.

        Completeness, robustness, convergence and corrigibility read the base run (a RUN id,
        or the SPEC's run, which is run first and resumes if it exists); transitivity uses the
        run's pairs when they hold enough complete triads, else asks its own. The others ask
        their generated outcome sets in derived runs named `<base run id>-<analysis>-<hash>`.
        `--preset paper` uses the paper's design sizes and variants (the prompt count is
        printed first); every headline number prints with its 95% interval. Results:
        `valuescope sql "SELECT * FROM analysis_<name>"` (name with `_`), figures under
        `<root>/figures/`. Example:

            valuescope analyze time-discounting --model smollm2-135m --root results
        """
        from cluster.experiments.analyze import analyze as run_one
        from cluster.experiments.analyze import analyze_all, resolve

        root = base.get("root") or (base["spec"].root if "spec" in base else "results")
        if analysis.strip().lower() == "all":
            outputs, failed = analyze_all(**base, options=options, echo=_echo)
            _print_outputs(outputs, root)
            if failed:
                from cluster.experiments.analyze import AnalysisError

                lines = "; ".join(f"{k}: {v}" for k, v in failed.items())
                real = [k for k, v in failed.items() if not v.startswith("skipped")]
                if real:
                    raise AnalysisError(f"{len(real)} analysis(es) failed: {lines}")
                click.echo(lines, err=True)
            return
        resolve(analysis)  # unknown names fail before anything runs
        _print_outputs(run_one(analysis, **base, options=options, echo=_echo), root)

    @cli.command()
    @click.argument("run_id")
    @click.option("--root", default="results", show_default=True, help="Results root.")
    @click.option(
        "--out",
        type=click.Path(dir_okay=False),
        help="HTML file to write [<root>/reports/<RUN>.html].",
    )
    def report(run_id: str, root: str, out: str | None) -> None:
        """Write one self-contained HTML page for a run: ranked utilities, fit metrics,
        position bias, and every analysis of the run and of the runs derived from it."""
        from cluster.reports.html import write_report

        path = write_report(root, run_id, out)
        click.echo(f"report: {path}")
