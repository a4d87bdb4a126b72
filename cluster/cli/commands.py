"""The ``valuescope`` command line.

The CLI only parses arguments and calls the Python API. It imports nothing heavy at start-up
(no ray, torch, transformers or vllm) so ``valuescope --help`` answers at once; each command
imports what it needs. Our own errors print one line (``--debug`` shows the traceback), Ctrl-C
exits with 130, and anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cluster.cli.display import console, echo_table
from cluster.cli.options import spec_options

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
OUR_PACKAGES = ("storage", "elicit", "fit", "cluster")


@click.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="valuescope", prog_name="valuescope")
def cli(debug: bool) -> None:
    """valuescope: measure the value systems of language models.

    Ask a model many forced-choice questions between outcomes, fit a utility function to its
    answers, and query the results with SQL. Start with `valuescope run` (the built-in
    quickstart), then `valuescope sql "SELECT * FROM fits"`.
    """


# --- specs -------------------------------------------------------------------------------------


@cli.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--schema", is_flag=True, help="Print the JSON Schema of spec files instead.")
def validate(spec: str | None, schema: bool) -> None:
    """Check a spec file and print it with every default filled in."""
    from cluster.spec import json_schema, load_spec

    if schema:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    if spec is None:
        raise click.UsageError("give a SPEC file, or --schema")
    import yaml

    resolved = load_spec(spec)
    click.echo(f"# {spec}: valid; run id {resolved.resolved_run_id()}")
    click.echo(
        yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    )


# --- elicitation ------------------------------------------------------------------------------


_VERBOSE = click.option(
    "--verbose", is_flag=True, help="Show the engines' own output (else: the run's engine log)."
)


@cli.command()
@spec_options(check="models")
@_VERBOSE
@click.option("--wide", is_flag=True, help="Full outcome texts in the ranked table.")
def run(spec: Any, verbose: bool, wide: bool) -> None:
    """Elicit, fit and rank: the whole pipeline for every model of a spec.

    With no arguments this is the built-in quickstart: the packaged SmolLM2-135M model on this
    machine, the starter outcome set, active learning to the default budget, a Thurstonian fit
    and a ranked table. After each active-learning round a line shows the ranking so far;
    Ctrl-C fits what was asked, and rerunning the command resumes. Without a spec file the main
    fields are flags, e.g. `valuescope run --model simulated --outcomes starter --root DIR`.
    """
    from cluster.cli.live import LivePrinter, interrupted
    from cluster.cli.show import render
    from cluster.pipeline.run import RunInterrupted
    from cluster.pipeline.run import run as run_spec

    run_id = spec.resolved_run_id()
    click.echo(
        f"run {run_id}: {spec.design.kind} design, outcomes {', '.join(spec.outcomes)}; "
        f"results in {spec.root}",
        err=True,
    )
    try:
        results = run_spec(spec, listener=LivePrinter(), verbose=verbose)
    except RunInterrupted as exc:
        interrupted(run_id, spec.root, exc.model, exc.fitted)
        raise
    for r in results:
        asked = sum(x.rows_written for x in r.rounds)
        click.echo(
            f"{r.model}: {r.queried_pairs:,} training + {r.holdout_pairs:,} held-out pairs; "
            f"{asked:,} prompts asked now",
            err=True,
        )
    render(spec.root, run_id, wide=wide)
    click.echo(
        f'\nQuery the results: valuescope sql "SELECT * FROM utilities" --root {spec.root}\n'
        f"Full texts: valuescope show {run_id} --root {spec.root} --wide\n"
        "Larger model: valuescope run --model Qwen/Qwen2.5-7B-Instruct (any HF id or\n"
        "  folder; --scorer vllm on a GPU), or a spec file: valuescope run spec.yaml"
    )


@cli.command("fit")
@click.argument("run_id")
@click.option("--root", default="results", show_default=True, help="Results root.")
@click.option(
    "--estimator", type=click.Choice(["thurstonian", "bt"]), help="Estimator (default: the run's)."
)
@click.option(
    "--position-bias/--no-position-bias", default=None, help="Fit a first-position bias term."
)
def fit_command(run_id: str, root: str, estimator: str | None, position_bias: bool | None) -> None:
    """Refit a run's stored comparisons without querying any model."""
    from cluster.cli.show import render
    from cluster.pipeline.fitting import refit

    rows = refit(root, run_id, estimator=estimator, position_bias=position_bias)
    render(root, run_id, fit_id=rows[0]["fit_id"], chosen="this refit")


@cli.command()
@click.argument("run_id")
@click.option("--root", default="results", show_default=True, help="Results root.")
@click.option("--rows", default=10, show_default=True, help="Top and bottom outcomes shown.")
@click.option("--fit", "fit_id", help="Fit to show (e.g. bt, thurstonian-pb).")
@click.option(
    "--estimator", type=click.Choice(["thurstonian", "bt"]), help="Show the latest fit of this."
)
@click.option("--wide", is_flag=True, help="Full outcome texts (one row a line).")
def show(
    run_id: str, root: str, rows: int, fit_id: str | None, estimator: str | None, wide: bool
) -> None:
    """Print a run's ranked utilities, fit metrics and what they mean.

    Shows the run's own fit (the one `valuescope run` made) unless --fit or --estimator picks
    another, e.g. a refit by `valuescope fit RUN --estimator bt`; the title says which.
    """
    from cluster.cli.show import render

    if fit_id and estimator:
        raise click.UsageError("give --fit or --estimator, not both")
    render(root, run_id, rows=rows, fit_id=fit_id, estimator=estimator, wide=wide)


@cli.command("elicit")
@spec_options(check="models")
@_VERBOSE
def elicit_command(spec: Any, verbose: bool) -> None:
    """Ask a model every pair of a design (`full` graph or a `pairs` file) and store the answers.

    Quick runs need no spec file:

        valuescope elicit --model simulated --outcomes starter --design full --root DIR
    """
    from cluster.cli.live import LivePrinter
    from cluster.pipeline.run import elicit as run_elicit

    for r in run_elicit(spec, listener=LivePrinter(), verbose=verbose):
        click.echo(
            f"{r.model} round {r.round}: {r.rows_written:,} prompts scored "
            f"({r.shards_scored} shards, {r.shards_skipped} already done), {r.errors} errors, "
            f"{r.prompts_per_s:,.0f} prompts/s"
        )
    click.echo(
        f"results: {spec.root} (run {spec.resolved_run_id()}); "
        f'query with: valuescope sql "SELECT * FROM comparisons LIMIT 5" --root {spec.root}'
    )


@cli.command()
@spec_options(check="inputs")
@click.option(
    "-n", "count", default=5, show_default=True, type=click.IntRange(min=1), help="Pairs to show."
)
def preview(spec: Any, count: int) -> None:
    """Print rendered prompts (both orientations) without loading a model."""
    from cluster.pipeline.preview import preview as run_preview

    for item in run_preview(spec, count):
        click.secho(f"--- {item['pair']} (orientation {item['orientation']})", bold=True)
        click.echo(item["prompt"])


# --- results -----------------------------------------------------------------------------------


@cli.command()
@click.argument("query")
@click.option(
    "--root", default="results", show_default=True, help="Results root (folder or s3://)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="Output format; parquet writes binary to standard output.",
)
@click.option(
    "--limit",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows shown in table format (0 = all).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop the query after this many seconds.",
)
@click.option("--memory-limit", help="Stop the query past this much memory (e.g. 2GB).")
def sql(
    query: str, root: str, fmt: str, limit: int, timeout_s: float | None, memory_limit: str | None
) -> None:
    """Run a read-only SQL query over a results root.

    Views: comparisons, utilities, fits, outcomes, runs. Example:

        valuescope sql "SELECT model, count(*) FROM comparisons GROUP BY model"
    """
    from cluster.store import RunStore

    with RunStore(root, memory_limit=memory_limit) as store:
        table = store.query(query, timeout_s=timeout_s)
    if fmt == "table":
        echo_table(table, limit=limit)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        sink = sys.stdout.buffer
        pacsv.write_csv(table, sink)
    elif fmt == "json":
        for row in table.to_pylist():
            click.echo(json.dumps(row, default=str))
    else:
        if sys.stdout.isatty():
            raise click.UsageError(
                "--format parquet writes binary; redirect it to a file (> out.parquet)"
            )
        import pyarrow.parquet as pq

        pq.write_table(table, sys.stdout.buffer)


@cli.group()
def outcomes() -> None:
    """Outcome sets: the states of the world models are asked about."""


@outcomes.command("show")
@click.argument("source")
@click.option("--limit", default=0, help="Show at most this many outcomes (0 = all).")
def outcomes_show(source: str, limit: int) -> None:
    """Validate and print an outcome set (a file, or a built-in name such as `starter`)."""
    from elicit.outcomes import load_outcomes

    outcome_set = load_outcomes(source)
    from rich.table import Table

    table = Table(title=f"{outcome_set.name}: {len(outcome_set)} outcomes", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("text")
    table.add_column("attributes")
    shown = outcome_set.outcomes[:limit] if limit else outcome_set.outcomes
    for o in shown:
        table.add_row(o.id, o.text, json.dumps(o.attributes) if o.attributes else "")
    console().print(table)
    if outcome_set.description:
        console().print(outcome_set.description)


@outcomes.command("list")
def outcomes_list() -> None:
    """List the built-in outcome sets."""
    from elicit.outcomes import builtin_sets, load_outcomes

    for name in builtin_sets():
        s = load_outcomes(name)
        click.echo(f"{name}\t{len(s)} outcomes\t{s.description}")


@cli.command()
def env() -> None:
    """Print versions of valuescope and its libraries (paste this into bug reports)."""
    import platform
    import shutil

    from storage.manifest import git_revision, package_versions

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "executable": sys.executable,
        **package_versions(),
        "git_revision": git_revision() or "-",
        "nvidia-smi": shutil.which("nvidia-smi") or "not found",
    }
    for key, value in info.items():
        click.echo(f"{key:14} {value}")


from cluster.cli.analyze import register as _register_analyze  # noqa: E402
from cluster.cli.control import register as _register_control  # noqa: E402
from cluster.cli.jobs import register as _register_cluster  # noqa: E402
from cluster.cli.probe import register as _register_probe  # noqa: E402

_register_cluster(cli)
_register_analyze(cli)
_register_control(cli)
_register_probe(cli)


# --- entry point -------------------------------------------------------------------------------


def _is_ours(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in OUR_PACKAGES and isinstance(exc, Exception)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: our errors in one line, Ctrl-C → 130, bugs with a traceback."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="valuescope", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like our own errors; --help has the usage
        command = exc.ctx.command_path if exc.ctx is not None else "valuescope"
        message = " ".join(exc.format_message().split())
        click.echo(f"{command}: error: {message} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _is_ours(exc) and not debug:
            click.echo(f"valuescope: error: {exc}", err=True)
            _echo_log_tail(exc)
            sys.exit(1)
        raise


def _echo_log_tail(exc: BaseException) -> None:
    """A failed replica's last log lines, after its one-line error."""
    tail = getattr(exc, "log_tail", None)
    if tail:
        click.echo(f"last lines of {getattr(exc, 'log_path', 'the engine log')}:", err=True)
        for line in tail:
            click.echo(f"  {line}", err=True)


if __name__ == "__main__":
    main()
