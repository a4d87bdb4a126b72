"""Commands of target preferences and utility control: ``assembly`` (a simulated citizen
assembly's preferences as a target) and ``control`` (fine-tune a model toward a target and
report agreement before and after). Nothing heavy is imported until a command runs."""

from __future__ import annotations

from typing import Any

import click

from cluster.reports.format import cell


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _fmt(value: Any) -> str:
    return cell(value, 3)


def _before_after(row: dict[str, Any]) -> None:
    """Print the headline numbers of a control run as a before/after table."""
    from rich.table import Table

    from cluster.cli.display import console

    table = Table(title="utility control: agreement with the target", title_justify="left")
    for name in ("measure", "pairs", "before", "after"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    counts = {
        "train": row["train_pairs"],
        "heldout_pair": row["heldout_pairs"],
        "heldout_outcome": row["heldout_outcome_pairs"],
    }
    labels = {
        "train": "trained pairs",
        "heldout_pair": "held-out pairs",
        "heldout_outcome": "pairs with held-out outcomes",
    }
    for role, label in labels.items():
        table.add_row(
            f"{label}: same preferred side",
            str(counts[role]),
            _fmt(row[f"agree_{role}_before"]),
            _fmt(row[f"agree_{role}_after"]),
        )
    for role, label in labels.items():
        table.add_row(
            f"{label}: mean |P − P_target|",
            str(counts[role]),
            _fmt(row[f"mae_{role}_before"]),
            _fmt(row[f"mae_{role}_after"]),
        )
    table.add_row(
        "Spearman of utilities with the target's",
        "",
        *(_fmt(row[f"spearman_{w}"]) for w in ("before", "after")),
    )
    if row.get("lean_before") is not None:
        table.add_row(
            f"political lean (target {_fmt(row['lean_target'])})",
            "",
            _fmt(row["lean_before"]),
            _fmt(row["lean_after"]),
        )
    console().print(table)


def register(cli: click.Group) -> None:
    """Add ``assembly`` and ``control`` to the ``valuescope`` group."""

    @cli.command(context_settings={"max_content_width": 100})
    @click.argument("run_id", metavar="RUN")
    @click.option("--root", default="results", show_default=True, help="Results root.")
    @click.option("--personas", default=20, show_default=True, help="Panel members drawn.")
    @click.option(
        "--aggregate",
        type=click.Choice(["mean", "majority"]),
        default="mean",
        show_default=True,
        help="Mean of the members' probabilities, or majority vote.",
    )
    @click.option(
        "--panel",
        type=click.Path(dir_okay=False),
        help="Panel file (attributes, weights, persona text) [the packaged one].",
    )
    @click.option("--seed", default=0, show_default=True, help="Seed of the members and pairs.")
    @click.option("--n-pairs", type=int, help="Ask a sparse design of this many pairs [all].")
    @click.option("--model", help="Model of the run that answers [its first].")
    @click.option(
        "--spread",
        default=0.5,
        show_default=True,
        help="Simulated agents only: how far members' utilities differ.",
    )
    def assembly(
        run_id: str,
        root: str,
        personas: int,
        aggregate: str,
        panel: str | None,
        seed: int,
        n_pairs: int | None,
        model: str | None,
        spread: float,
    ) -> None:
        """Target preferences from a simulated citizen assembly.

        Draws a panel of personas (demographic attributes from the panel file), asks the run's
        model every pair of the run's outcomes in each persona's voice (one derived run per
        persona, resumable), aggregates the answers per pair into a target P, and fits target
        utilities. Results: `valuescope sql "SELECT * FROM analysis_assembly_target"`. Then:
        `valuescope control RUN`.

            valuescope assembly RUN --personas 20 --aggregate majority
        """
        import pyarrow as pa

        from cluster.cli.display import echo_table
        from cluster.control.assembly import AssemblyOptions, run_assembly

        options = AssemblyOptions(
            personas=personas,
            aggregate=aggregate,  # type: ignore[arg-type]
            panel=panel,
            seed=seed,
            n_pairs=n_pairs,
            model=model,
            spread=spread,
        )
        out = run_assembly(root, run_id, options, echo=_echo)
        row = out.row
        echo_table(
            pa.table({"metric": list(row), out.model: [_fmt(v) for v in row.values()]}),
            title=f"assembly of run {run_id}",
        )
        click.echo(
            f'\nQuery: valuescope sql "SELECT * FROM analysis_assembly_target" --root {root}\n'
            f"Next: valuescope control {run_id} --root {root}"
        )

    @cli.command(context_settings={"max_content_width": 100})
    @click.argument("run_id", metavar="RUN")
    @click.option("--root", default="results", show_default=True, help="Results root.")
    @click.option(
        "--target",
        default="assembly",
        show_default=True,
        help="`assembly` (the run's assembly target) or a CSV/Parquet file with columns "
        "outcome_a, outcome_b, p_target.",
    )
    @click.option(
        "--method",
        type=click.Choice(["auto", "lora", "full"]),
        default="auto",
        show_default=True,
        help="Full fine-tuning, LoRA adapters, or auto (full up to 1B parameters).",
    )
    @click.option("--epochs", default=3, show_default=True, help="Passes over the examples.")
    @click.option("--lr", type=float, help="Learning rate [1e-4 full, 5e-4 LoRA].")
    @click.option("--batch-size", default=8, show_default=True, help="Examples per step.")
    @click.option("--lora-rank", default=8, show_default=True, help="LoRA rank.")
    @click.option(
        "--layers", type=int, help="Train only the last N transformer blocks [all]; faster."
    )
    @click.option(
        "--heldout-outcomes", default=0.2, show_default=True, help="Share of outcomes held out."
    )
    @click.option(
        "--heldout-pairs",
        default=0.25,
        show_default=True,
        help="Share of the pairs among training outcomes held out.",
    )
    @click.option("--seed", default=0, show_default=True, help="Seed of split, order, adapters.")
    @click.option("--model", help="Model of the run to tune [its first].")
    @click.option(
        "--out",
        type=click.Path(file_okay=False),
        help="Folder for the tuned model [<root>/tuned/<RUN>/…].",
    )
    @click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
    def control(
        run_id: str,
        root: str,
        target: str,
        method: str,
        epochs: int,
        lr: float | None,
        batch_size: int,
        lora_rank: int,
        layers: int | None,
        heldout_outcomes: float,
        heldout_pairs: float,
        seed: int,
        model: str | None,
        out: str | None,
        device: str,
    ) -> None:
        """Fine-tune a run's model toward target preferences and measure how far it moved.

        Splits outcomes and pairs into trained and held-out ones, scores every target pair
        before, fine-tunes on the trained pairs (both orders; soft-label loss on the answer
        letters), saves the tuned model as a folder (`valuescope run --model FOLDER` loads it),
        scores again, and prints agreement with the target before and after. Simulated and
        API-served models cannot be tuned.

            valuescope control RUN --target assembly --epochs 3
        """
        from cluster.control.steer import ControlOptions, run_control

        options = ControlOptions(
            target=target,
            method=method,  # type: ignore[arg-type]
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            lora_rank=lora_rank,
            layers=layers,
            heldout_outcomes=heldout_outcomes,
            heldout_pairs=heldout_pairs,
            seed=seed,
            model=model,
            out=out,
            device=device,
        )
        result = run_control(root, run_id, options, echo=_echo)
        _before_after(result.row)
        click.echo(f"tuned model: {result.model_dir}")
        if result.figure:
            click.echo(f"figure: {result.figure}")
        click.echo(f'Query: valuescope sql "SELECT * FROM analysis_control_pairs" --root {root}')
