"""The ``probe`` command of the CLI: linear probes of a run's utilities on hidden states.

Nothing heavy (torch, transformers, scipy) is imported until the command runs.
"""

from __future__ import annotations

import click


def _layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of layer numbers (e.g. 0,6,12,-1)",
            param_hint="--layers",
        ) from None


def register(cli: click.Group) -> None:
    """Add ``probe`` to the ``valuescope`` group."""

    @cli.command(context_settings={"max_content_width": 100})
    @click.argument("run_id", metavar="RUN")
    @click.option("--root", default="results", show_default=True, help="Results root.")
    @click.option("--model", help="Model of the run to probe [every model with hidden states].")
    @click.option("--every", type=click.IntRange(min=1), help="Every k-th layer [about 8 layers].")
    @click.option("--layers", help="Explicit layers, comma-separated (0 = embeddings, -1 = last).")
    @click.option(
        "--folds", type=click.IntRange(min=2), default=5, show_default=True, help="K-fold split."
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the splits.")
    @click.option(
        "--context",
        type=click.Choice(["prompt", "raw"]),
        default="prompt",
        show_default=True,
        help="Outcome inside a short fixed prompt (chat template), or the raw text.",
    )
    @click.option("--batch-size", type=click.IntRange(min=1), help="Outcomes per forward pass.")
    @click.option("--device", help="Device for extraction (cpu, cuda) [the run's].")
    @click.option("--recompute", is_flag=True, help="Ignore cached hidden states.")
    @click.option(
        "--progress", type=click.Choice(["auto", "rich", "plain", "none"]), default="auto"
    )
    def probe(
        run_id: str,
        root: str,
        model: str | None,
        every: int | None,
        layers: str | None,
        folds: int,
        seed: int,
        context: str,
        batch_size: int | None,
        device: str | None,
        recompute: bool,
        progress: str,
    ) -> None:
        """Linear probes of a stored RUN's utilities on its model's hidden states.

        For every outcome, the last-token hidden state at every k-th layer (0 = embeddings,
        1…L = transformer blocks) is extracted with the run's model (hf or vllm runs; loaded
        with transformers) and cached under <root>/runs/RUN/hidden/, so a second call does
        not load the model. Per layer, a ridge probe to μ and a logistic probe of the pairwise
        preferences on h_a − h_b are cross-validated over outcomes. Results: `valuescope sql
        "SELECT * FROM analysis_probes_layers"`, figure under <root>/figures/. Example:

            valuescope probe smollm2-281023ab --root results --every 5
        """
        import pyarrow as pa

        from cluster.cli.display import echo_table
        from cluster.control.probe import ProbeOptions
        from cluster.control.probe import probe as run_probe

        options = ProbeOptions(
            model=model,
            every=every,
            layers=_layers(layers),
            folds=folds,
            seed=seed,
            context=context,  # type: ignore[arg-type]
            batch_size=batch_size,
            device=device,
            recompute=recompute,
            progress=progress,  # type: ignore[arg-type]
        )
        outputs = run_probe(run_id, root, options, echo=lambda msg: click.echo(msg, err=True))
        shown = (
            "layer", "r2_mu", "r2_mu_sd", "r2_mu_pooled",
            "pair_accuracy", "pair_accuracy_sd", "n_test_pairs",
        )  # fmt: skip
        for out in outputs:
            columns = {name: [r[name] for r in out.rows] for name in shown}
            first = out.rows[0]
            title = (
                f"{out.model}: {first['n_outcomes']} outcomes, {first['n_pairs']} pairs, "
                f"dim {first['dim']}, {first['folds']}-fold"
            )
            echo_table(pa.table(columns), title=title)
            if out.figure:
                click.echo(f"figure: {out.figure}")
        view = f"analysis_{outputs[0].analysis}_layers" if outputs else "analysis_probes_layers"
        click.echo(f'\nQuery: valuescope sql "SELECT * FROM {view}" --root {root}')
