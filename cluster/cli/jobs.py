"""Cluster commands of the CLI: Ray Jobs (``submit``, ``status``, ``logs``, ``cancel``),
``sweep`` and ``models``.

Registered on the main group by :func:`register`. Like the rest of the CLI, nothing heavy is
imported until a command runs (ray only inside the job and sweep commands).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from typing import Any

import click

from cluster.cli.options import spec_options
from cluster.reports.format import NULL, cell, num, pct

_ADDRESS_HELP = (
    "Ray job server (the dashboard): http://HEAD:8265. Default: $RAY_API_SERVER_ADDRESS, "
    "else http://127.0.0.1:8265. Token auth: RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH."
)


def _address_option(func: Any) -> Any:
    return click.option("--address", default=None, metavar="URL", help=_ADDRESS_HELP)(func)


def _job_env_options(func: Any) -> Any:
    func = click.option(
        "--env",
        "env",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a non-secret variable in the job's environment (repeatable).",
    )(func)
    return click.option(
        "--secret-env",
        "secret_env",
        multiple=True,
        metavar="NAME",
        help="The job needs this variable from the cluster's environment (repeatable); only "
        "the name is sent, and the job stops at once if the cluster does not set it.",
    )(func)


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"--env {pair!r}: write KEY=VALUE (secrets: --secret-env NAME)")
        out[key] = value
    return out


def _echo_raw(text: str) -> None:
    click.echo(text, nl=False)
    sys.stdout.flush()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _finish(state: Any, address: str | None) -> None:
    """Print the final line of a followed job; a failed job is an error (exit 1)."""
    from cluster.jobs.ray_jobs import JobError

    click.echo(f"[valuescope] job {state.submission_id}: {state.status}", err=True)
    if state.status != "SUCCEEDED":
        where = f" --address {address}" if address else ""
        raise JobError(
            f"job {state.submission_id} of run {state.run_id} {state.status.lower()}: "
            f"{state.message or 'no message'}; `valuescope logs {state.run_id}{where}` shows "
            "its log, and submitting again resumes the run"
        )


def render_sweep(result: Any) -> None:
    """Print the per-model table and the similarity matrix."""
    from rich.table import Table

    from cluster.cli.display import console

    table = Table(title=f"sweep {result.name}: {len(result.runs)} models", title_justify="left")
    for col in (
        "key",
        "family",
        "params (B)",
        "status",
        "held-out acc.",
        "order agreement",
        "seconds",
    ):
        table.add_column(col, justify="left" if col in ("key", "family", "status") else "right")

    for r in sorted(result.runs, key=lambda r: (r.family, r.params_b or 0, r.key)):
        table.add_row(
            r.key, r.family, cell(r.params_b), r.status,
            pct(r.fit.get("holdout_accuracy")), pct(r.fit.get("order_consistency")),
            f"{r.seconds:.1f}",
        )  # fmt: skip
    out = console()
    out.print(table)
    if result.similarity:
        keys = sorted(
            {s["key_a"] for s in result.similarity} | {s["key_b"] for s in result.similarity}
        )
        sim = {(s["key_a"], s["key_b"]): s["pearson"] for s in result.similarity}
        matrix = Table(
            title="utility similarity (Pearson r over shared outcomes)", title_justify="left"
        )
        matrix.add_column("")
        for k in keys:
            matrix.add_column(k, justify="right")
        for a in keys:
            cells = []
            for b in keys:
                corr = 1.0 if a == b else sim.get((a, b), sim.get((b, a)))
                cells.append(num(corr, 2, sign=True))
            matrix.add_row(a, *cells)
        out.print(matrix)
    for r in result.failed:
        out.print(f"[red]{r.key}[/red] ({r.run_id}): {r.status}: {r.message}")


def register(cli: click.Group) -> None:
    """Add the cluster commands to the ``valuescope`` group."""

    @cli.command()
    @spec_options
    @_address_option
    @click.option(
        "--wait",
        is_flag=True,
        help="Follow the job (status and progress lines) until it ends; exit 1 if it failed.",
    )
    @_job_env_options
    def submit(
        spec: Any,
        address: str | None,
        wait: bool,
        secret_env: tuple[str, ...],
        env: tuple[str, ...],
    ) -> None:
        """Run a spec on a Ray cluster as a Ray Job (`valuescope run spec.yaml` there).

        Takes a SPEC file or the same flags as `valuescope run`. The job's id is the run id;
        submitting a run whose job failed resumes it (as `<run>-attemptN`). The cluster's
        image must have valuescope installed; only the spec and its input files are uploaded.

            valuescope submit spec.yaml --address http://127.0.0.1:8265 --wait
        """
        from cluster.jobs import ray_jobs as jobs

        state = jobs.submit(spec, address, secret_env=secret_env, env=_parse_env(env))
        addr = jobs.normalise_address(address)
        again = f" (attempt {state.attempt}, resuming)" if state.attempt > 1 else ""
        click.echo(
            f"run {state.run_id}: submitted as job {state.submission_id} to {addr}{again}",
            err=True,
        )
        if not wait:
            click.echo(
                f"follow it: valuescope logs {state.run_id} --follow --address {addr}", err=True
            )
            return
        _finish(jobs.wait(addr, state.submission_id, _echo_raw), address)

    @cli.command()
    @click.argument("run", required=False)
    @_address_option
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def status(run: str | None, address: str | None, as_json: bool) -> None:
        """Status of a run's latest job, or of every valuescope job on the cluster."""
        from cluster.jobs import ray_jobs as jobs

        states = jobs.status(address, run)
        if as_json:
            for s in states:
                click.echo(json.dumps(dataclasses.asdict(s)))
            return
        if not states:
            click.echo(f"no valuescope jobs on {jobs.normalise_address(address)}")
            return
        from rich.table import Table

        from cluster.cli.display import console

        table = Table(title=f"jobs on {jobs.normalise_address(address)}", title_justify="left")
        for col in ("run", "job", "attempt", "kind", "status", "started", "ended", "message"):
            table.add_column(col, overflow="fold")
        for s in states:
            table.add_row(
                s.run_id,
                s.submission_id,
                str(s.attempt),
                s.kind,
                s.status,
                _when(s.start_time),
                _when(s.end_time),
                s.message[:120],
            )
        console().print(table)

    @cli.command()
    @click.argument("run")
    @_address_option
    @click.option("--follow", "-f", is_flag=True, help="Stream the log until the job ends.")
    def logs(run: str, address: str | None, follow: bool) -> None:
        """Print the log of a run's latest job (the driver's output)."""
        from cluster.jobs import ray_jobs as jobs

        if not follow:
            _echo_raw(jobs.logs(address, run))
            return
        state = jobs.tail(address, run, _echo_raw)
        click.echo(f"[valuescope] job {state.submission_id}: {state.status}", err=True)

    @cli.command()
    @click.argument("run")
    @_address_option
    def cancel(run: str, address: str | None) -> None:
        """Stop a run's running job (finished shards stay; submitting again resumes)."""
        from cluster.jobs import ray_jobs as jobs

        state = jobs.cancel(address, run)
        click.echo(f"job {state.submission_id} of run {state.run_id}: {state.status}")

    @cli.command()
    @click.argument("sweep_file", metavar="SWEEP", type=click.Path(dir_okay=False))
    @click.option("--plan", is_flag=True, help="Print the resolved models and exit.")
    @click.option(
        "--address",
        default=None,
        metavar="URL",
        help="Submit the sweep as a Ray Job to this job server instead of running it here.",
    )
    @click.option("--wait", is_flag=True, help="With --address: follow the job until it ends.")
    @_job_env_options
    def sweep(
        sweep_file: str,
        plan: bool,
        address: str | None,
        wait: bool,
        secret_env: tuple[str, ...],
        env: tuple[str, ...],
    ) -> None:
        """Run every model of a sweep file, each as its own run, packed onto the cluster.

        Models run side by side when the cluster has room (first-fit decreasing by GPUs);
        rerunning resumes (finished models are skipped). At the end: a table per model and
        the similarity of their utilities, also in SQL as `sweeps` and `sweep_similarity`.
        """
        from cluster.jobs.ray_jobs import check_secret_env, submit_sweep
        from cluster.jobs.sweep import load_sweep, resolve_model, run_sweep

        check_secret_env()  # inside a job: the secrets it was submitted with are on the cluster
        spec = load_sweep(sweep_file)
        if plan:
            for m in spec.models:
                p = resolve_model(spec, m)
                c = p.config
                click.echo(
                    f"{p.key}\trun {p.run_id}\t{c.name}\t{p.family}\t{cell(p.params_b)}B\t"
                    f"{c.scorer}\t{c.gpus_per_replica:g} GPU/replica, tp {c.tensor_parallel}, "
                    f"replicas {c.replicas}"
                )
            if spec.gpus is None:
                click.echo("(set the sweep's `gpus` to preview how models are packed)")
                return
            from cluster.jobs.sweep import plan_waves

            planned = [resolve_model(spec, m) for m in spec.models]
            needs = {p.key: None if p.config.replicas == "auto" else (p.gpus, 0.0) for p in planned}
            waves = plan_waves(needs, spec.gpus, float("inf"))
            click.echo(f"packing on {spec.gpus:g} GPUs: " + " | ".join(", ".join(w) for w in waves))
            return
        if address is not None:
            from cluster.jobs import ray_jobs as jobs

            state = submit_sweep(sweep_file, address, secret_env=secret_env, env=_parse_env(env))
            addr = jobs.normalise_address(address)
            click.echo(
                f"sweep {spec.name}: submitted as job {state.submission_id} to {addr}", err=True
            )
            if wait:
                _finish(jobs.wait(addr, state.submission_id, _echo_raw), address)
            return
        result = run_sweep(spec, echo=lambda text: click.echo(text, err=True))
        render_sweep(result)
        click.echo(
            f"\nQuery: valuescope sql \"SELECT * FROM sweeps WHERE sweep = '{spec.name}'\" "
            f"--root {spec.root}"
        )
        if result.failed:
            from cluster.errors import ClusterError

            names = ", ".join(r.key for r in result.failed)
            raise ClusterError(
                f"sweep {spec.name}: {len(result.failed)} of {len(result.runs)} models did not "
                f"finish ({names}); run the sweep again to resume them"
            )

    @cli.command()
    @click.option("--family", help="Only this family (e.g. qwen2.5, llama3).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def models(family: str | None, as_json: bool) -> None:
        """List the model registry: names, Hugging Face ids, sizes and GPU needs."""
        from elicit.models import load_registry

        entries = [e for e in load_registry().values() if family is None or e.family == family]
        entries.sort(key=lambda e: (e.family, e.params_b or 0))
        if as_json:
            for e in entries:
                click.echo(json.dumps(e.model_dump(mode="json")))
            return
        from rich.table import Table

        from cluster.cli.display import console

        table = Table(title=f"{len(entries)} registered models", title_justify="left")
        for col in ("name", "family", "hf id", "params (B)", "GPUs / TP", "context", "dtype"):
            table.add_column(col, no_wrap=col != "hf id")
        for e in entries:
            table.add_row(
                e.name,
                e.family,
                e.hf_id,
                cell(e.params_b),
                "CPU" if e.gpus == 0 else f"{e.gpus:g} / {e.tensor_parallel}",
                NULL if e.max_context is None else f"{e.max_context:,}",
                e.dtype,
            )
        console().print(table)
        click.echo("Use a name in a spec (`models: [{name: …}]`) or a sweep file.")
