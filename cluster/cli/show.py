"""What ``valuescope run`` prints at the end and ``valuescope show RUN`` prints: per model, the
ranked utility table, the fit metrics and the plain reading (data from
:mod:`cluster.reports.summary`)."""

from __future__ import annotations

from typing import Any

from cluster.cli.display import console
from cluster.reports.summary import load, reading, standardise_truth

_ROWS = 10


def render(root: str, run_id: str, *, rows: int = _ROWS) -> None:
    """Print the ranked table, the metrics and the reading of every model in a run."""
    from rich.table import Table

    out = console()
    for model, data in load(root, run_id).items():
        f, utilities, answers = data["fit"], data["utilities"], data["answers"]
        table = Table(
            title=f"{model}: utilities ({f['estimator']}, fit {f['fit_id']})", title_justify="left"
        )
        table.add_column("rank", justify="right")
        table.add_column("outcome", no_wrap=True)
        table.add_column("μ", justify="right")
        table.add_column("95% interval", justify="right")
        has_truth = any(u["true_utility"] is not None for u in utilities)
        if has_truth:
            table.add_column("true (z)", justify="right")
            standardise_truth(utilities)
        table.add_column("text", overflow="ellipsis", max_width=60)
        shown: list[tuple[int | None, Any]] = list(enumerate(utilities, 1))
        if len(shown) > 2 * rows:
            shown = shown[:rows] + [(None, None)] + shown[-rows:]
        for rank, u in shown:
            if u is None:
                table.add_row("…", "", "", "", *([""] if has_truth else []), "")
                continue
            interval = "" if u["mu_lo"] is None else f"[{u['mu_lo']:+.2f}, {u['mu_hi']:+.2f}]"
            truth = [f"{u['true_utility']:+.2f}"] if has_truth else []
            table.add_row(
                str(rank), u["outcome_id"], f"{u['mu']:+.2f}", interval, *truth, u["text"] or ""
            )
        out.print(table)

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:.1%}"

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        beta = f.get("position_bias")
        beta_text = (
            "-"
            if beta is None
            else f"{beta:+.2f} [{f['position_bias_lo']:+.2f}, {f['position_bias_hi']:+.2f}]"
        )
        out.print(
            f"held-out accuracy {pct(f['holdout_accuracy'])} (log-loss {num(f['holdout_log_loss'])}), "
            f"training accuracy {pct(f['train_accuracy'])}, orientation agreement {pct(f['order_consistency'])}\n"
            f"first-listed option wins {pct(answers['first_wins'])} of prompts (mean P(first) "
            f"{num(answers['mean_p_first'])}), fitted position bias β {beta_text}; letter mass "
            f"{num(answers['mass'])}, error rate {pct(answers['error_rate'])}\n"
            f"{f['n_pairs']:,} pairs from {f['n_rows']:,} answers; fit {f['iterations']} iterations, "
            f"{'converged' if f['converged'] else 'NOT converged'}, {f['seconds']:.2f} s"
        )
        out.print(f"[bold]Reading:[/bold] {reading(f, answers)}")
