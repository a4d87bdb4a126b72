"""What a run found, for people: a ranked utility table, the fit metrics and a plain reading.

Used by ``valuescope run`` at the end and by ``valuescope show RUN``. Everything is read back
from the results store with SQL, so what is shown is exactly what was stored.
"""

from __future__ import annotations

from typing import Any

from storage import Root
from storage.catalog import connect

_ROWS = 10


def load(root: str, run_id: str) -> dict[str, Any]:
    """Fits and utilities of a run, per model (latest fit of each estimator)."""
    con = connect(Root(root))
    try:
        fits = (
            con.sql(
                "SELECT * FROM fits WHERE run_id = $run ORDER BY model, created_at",
                params={"run": run_id},
            )
            .to_arrow_table()
            .to_pylist()
        )
        if not fits:
            runs = [
                r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()
            ]
            from cluster.errors import ClusterError

            hint = f"; runs in this root: {', '.join(runs[-8:])}" if runs else ""
            raise ClusterError(f"run {run_id!r} has no fits in {root!r}{hint}")
        latest: dict[str, dict[str, Any]] = {}
        for f in fits:
            latest[f["model"]] = f  # ordered by created_at: the last one wins
        out: dict[str, Any] = {}
        for model, f in latest.items():
            utilities = (
                con.sql(
                    """SELECT u.outcome_id, o.text, u.mu, u.mu_lo, u.mu_hi, u.sigma2, o.true_utility
                   FROM utilities u LEFT JOIN outcomes o
                     ON o.run_id = u.run_id AND o.outcome_id = u.outcome_id
                   WHERE u.run_id = $run AND u.model = $model AND u.fit_id = $fit
                   ORDER BY u.mu DESC""",
                    params={"run": run_id, "model": model, "fit": f["fit_id"]},
                )
                .to_arrow_table()
                .to_pylist()
            )
            bias = (
                con.sql(
                    """SELECT avg(CASE WHEN p_a > 0.5 THEN 1.0 ELSE 0.0 END) AS first_wins,
                          avg(p_a) AS mean_p_first, avg(mass) AS mass,
                          avg(CASE WHEN error IS NULL THEN 0.0 ELSE 1.0 END) AS error_rate
                   FROM comparisons WHERE run_id = $run AND model = $model""",
                    params={"run": run_id, "model": model},
                )
                .to_arrow_table()
                .to_pylist()[0]
            )
            out[model] = {"fit": f, "utilities": utilities, "answers": bias}
        return out
    finally:
        con.close()


def _standardise_truth(utilities: list[dict[str, Any]]) -> None:
    """Put simulated true utilities on the fitted scale (mean 0, sd 1) for display."""
    import numpy as np

    truth = np.array([u["true_utility"] for u in utilities], dtype=float)
    z = (truth - np.nanmean(truth)) / (np.nanstd(truth) or 1.0)
    for u, value in zip(utilities, z, strict=True):
        u["true_utility"] = float(value)


def reading(fit: dict[str, Any], answers: dict[str, Any]) -> str:
    """One plain sentence on what the numbers mean."""
    agree = fit.get("order_consistency")
    acc = fit.get("holdout_accuracy")
    first = answers.get("first_wins")
    parts = []
    if first is not None and (first > 0.8 or first < 0.2):
        side = "first" if first > 0.5 else "second"
        parts.append(
            f"answers are dominated by position: the {side}-listed option wins {max(first, 1 - first):.0%} "
            "of prompts"
        )
    if agree is not None and agree < 0.6:
        parts.append(f"the two orderings of a pair agree on only {agree:.0%} of pairs")
    if acc is not None and parts:
        parts.append(
            f"beyond that bias, the fitted utilities still predict {acc:.0%} of held-out choices "
            "(both orders averaged)"
        )
    elif acc is not None:
        if acc >= 0.8:
            parts.append(
                f"the utilities predict {acc:.0%} of held-out choices, so preferences are largely coherent"
            )
        elif acc >= 0.6:
            parts.append(
                f"the utilities predict {acc:.0%} of held-out choices: some coherent preference"
            )
        else:
            parts.append(
                f"the utilities predict only {acc:.0%} of held-out choices: little coherent preference"
            )
    if not parts:
        return "No held-out pairs were asked, so coherence cannot be judged."
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def render(root: str, run_id: str, *, rows: int = _ROWS) -> None:
    """Print the ranked table, the metrics and the reading of every model in a run."""
    from rich.table import Table

    from cluster.cli_common import console

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
            _standardise_truth(utilities)
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
