"""What ``valuescope run`` prints at the end and ``valuescope show RUN`` prints: per model, which
fit is shown, the ranked utility table, the fit metrics and the plain reading (data from
:mod:`cluster.reports.summary`).

The table fits the terminal (80 columns when it is not one): outcome ids and texts are cut with
an ellipsis to the width left by the number columns; ``wide`` prints full texts, one row a line.
"""

from __future__ import annotations

from typing import Any

from cluster.cli.display import console
from cluster.reports.format import NULL, num, pct
from cluster.reports.summary import load, reading, standardise_truth

_ROWS = 10
_ID_WIDTH = 18
_MIN_TEXT = 12


def _cells(u: dict[str, Any] | None, rank: int | None, has_truth: bool) -> list[str]:
    if u is None:
        return ["…", "", "", "", *([""] if has_truth else []), ""]
    interval = "" if u["mu_lo"] is None else f"[{u['mu_lo']:+.2f}, {u['mu_hi']:+.2f}]"
    truth = [f"{u['true_utility']:+.2f}"] if has_truth else []
    return [str(rank), u["outcome_id"], f"{u['mu']:+.2f}", interval, *truth, u["text"] or ""]


def ranked_table(
    title: str, utilities: list[dict[str, Any]], *, rows: int, width: int, wide: bool
) -> tuple[Any, int]:
    """The ranked utility table (a rich Table) and the width to print it at: ``width`` with
    ids and texts cut to fit, or (``wide``) its natural width."""
    from rich.cells import cell_len
    from rich.table import Table

    has_truth = any(u["true_utility"] is not None for u in utilities)
    if has_truth:
        standardise_truth(utilities)
    shown: list[tuple[int | None, Any]] = list(enumerate(utilities, 1))
    if len(shown) > 2 * rows:
        shown = shown[:rows] + [(None, None)] + shown[-rows:]
    body = [_cells(u, rank, has_truth) for rank, u in shown]
    heads = ["rank", "outcome", "μ", "95% interval", *(["true (z)"] if has_truth else []), "text"]
    natural = [max([cell_len(h)] + [cell_len(r[k]) for r in body]) for k, h in enumerate(heads)]
    frame = 3 * len(heads) + 1  # a space either side of each cell and the rules between
    if wide:
        widths = natural
    else:
        widths = list(natural)
        widths[1] = min(natural[1], _ID_WIDTH)
        fixed = sum(widths[:-1]) + frame
        widths[-1] = max(min(natural[-1], width - fixed), _MIN_TEXT)
        if fixed + widths[-1] > width:  # a very narrow terminal: cut the ids further
            widths[1] = max(len("outcome"), widths[1] - (fixed + widths[-1] - width))
    table = Table(title=title, title_justify="left")
    for k, head in enumerate(heads):
        numeric = 0 < k < len(heads) - 1 and k != 1
        table.add_column(
            head,
            justify="right" if numeric or k == 0 else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=widths[k],
        )
    for cells in body:
        table.add_row(*cells)
    return table, sum(widths) + frame


def render(
    root: str,
    run_id: str,
    *,
    rows: int = _ROWS,
    fit_id: str | None = None,
    estimator: str | None = None,
    wide: bool = False,
    chosen: str | None = None,
) -> None:
    """Print which fit is shown, the ranked table, the metrics and the reading of every model in
    a run. ``chosen`` overrides the reason given for the fit shown (e.g. "this refit")."""
    out = console()
    for model, data in load(root, run_id, fit_id=fit_id, estimator=estimator).items():
        f, answers = data["fit"], data["answers"]
        why = chosen or data["chosen"]
        title = f"{model}: utilities from fit {f['fit_id']} ({why})"
        table, width = ranked_table(title, data["utilities"], rows=rows, width=out.width, wide=wide)
        if wide:  # the table at its natural width, one row a line, however wide
            from rich.console import Console

            Console(width=max(width, out.width), soft_wrap=False).print(table)
        else:
            out.print(table)
        for line in _metrics(f, answers):
            out.print(line, highlight=False)
        if data["others"]:
            others = ", ".join(data["others"])
            out.print(f"other fits: {others} (valuescope show {run_id} --fit ID)", highlight=False)
        out.print(f"[bold]Reading:[/bold] {reading(f, answers)}", highlight=False)


def _at_tie_text(f: dict[str, Any]) -> str:
    """'first-listed wins 74% of ties [72%, 75%]' from the fits row (β in noise units)."""
    tie = f.get("first_at_tie")
    if tie is None:
        return "ties not modelled"
    lo, hi = f.get("first_at_tie_lo"), f.get("first_at_tie_hi")
    if lo is None or hi is None:
        return f"first-listed wins {tie:.0%} of ties"
    # whole percents unless the interval would then read [89%, 89%]
    digits = 0 if f"{lo:.0%}" != f"{hi:.0%}" else 1
    return f"first-listed wins {tie:.{digits}%} of ties [{lo:.{digits}%}, {hi:.{digits}%}]"


def _metrics(f: dict[str, Any], answers: dict[str, Any]) -> list[str]:
    beta = f.get("position_bias")
    beta_text = (
        "not fitted"
        if beta is None
        else f"{beta:+.2f} [{f['position_bias_lo']:+.2f}, {f['position_bias_hi']:+.2f}]"
    )
    return [
        f"held-out accuracy {pct(f['holdout_accuracy'])} (log-loss "
        f"{num(f['holdout_log_loss'])}); training accuracy {pct(f['train_accuracy'])}",
        f"orientation agreement {pct(f['order_consistency'])}; first-listed option wins "
        f"{pct(answers['first_wins'])}",
        f"position bias: {_at_tie_text(f)}",
        f"  β {beta_text} (sd(μ) units); mean P(first) {num(answers['mean_p_first'])}",
        f"{f['n_pairs']:,} pairs from {f['n_rows']:,} answers; error rate "
        f"{pct(answers['error_rate'])}; letter mass {num(answers['mass'])}",
        *_answer_lines(f, answers),
        f"{f['estimator']} fit: {f['iterations']} steps, "
        f"{'converged' if f['converged'] else 'NOT converged'}; {f['seconds']:.2f} s "
        f"(point {num(f.get('seconds_point'), 2)} s, intervals "
        f"{num(f.get('seconds_interval'), 2)} s)",
    ]


def _answer_lines(f: dict[str, Any], answers: dict[str, Any]) -> list[str]:
    """Refused and unparsed answers, pairs left with one order, and held-out scores per
    presented order next to the position-only baseline."""

    partial = f.get("partial_pairs")
    lines = [
        f"refused {pct(answers.get('refusal_rate'))} of prompts; unparsed "
        f"{pct(answers.get('unparsed_share'))} of samples",
        "pairs with one order answered: "
        + (NULL if partial is None else f"{partial:,} (left out of order-averaged labels)"),
    ]
    if f.get("holdout_oriented_log_loss") is not None:
        lines.append(
            f"held-out per order: loss {num(f['holdout_oriented_log_loss'])}, accuracy "
            f"{pct(f.get('holdout_oriented_accuracy'))}; position only: "
            f"{num(f.get('baseline_oriented_log_loss'))}, "
            f"{pct(f.get('baseline_oriented_accuracy'))}"
        )
    return lines
