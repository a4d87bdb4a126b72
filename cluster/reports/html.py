"""``valuescope report RUN``: one self-contained HTML page for a run.

The page opens with a figure of the run's ranked utilities (95 % intervals) and one of how each
model answered (position bias, letter mass, refusals), then holds the fit metrics per model,
the runs derived from it (``<RUN>-…``, made by ``valuescope analyze``), and every analysis
result whose ``run_id`` or ``base_run_id`` is the run or one of its derived runs, each with its
figures embedded as base64 PNG, its detail tables and its caveats (position bias, refusals and
small samples of the derived runs behind it). Wide tables scroll sideways. Everything is read
back from the results store with SQL, so the page shows exactly what was stored; it needs no
network and no files next to it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import warnings
from typing import Any

from cluster.errors import ClusterError
from cluster.reports.format import cell
from cluster.store import RunStore
from storage import Root, model_key
from storage.errors import StorageError

_RANKED_ROWS = 15

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.muted { color: #777; font-size: 0.85em; } .reading { background: #f7f7ff; padding: 0.6em; }
.scroll { overflow-x: auto; max-width: 100%; } td { white-space: nowrap; max-width: 40em;
  overflow: hidden; text-overflow: ellipsis; }
.caveats { background: #fff8e6; border-left: 3px solid #e0a800; padding: 0.4em 0.8em; }
"""


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="muted">(no rows)</p>'
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(cell(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _figures(root: Root, analysis: str, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """PNG figures of an analysis for the (run, model) pairs of its rows, and cross-model ones."""
    name = analysis.replace("_", "-")
    seen: set[str] = set()
    out = []
    for r in rows:
        for key in (model_key(r["model"]), "all"):
            path = root.path("figures", f"run_id={r['run_id']}", f"model={key}", f"{name}.png")
            if path in seen or not root.exists(path):
                continue
            seen.add(path)
            out.append((f"{name}: {r['run_id']} / {key}", root.read_bytes(path)))
    return out


def _model_section(model: str, data: dict[str, Any]) -> str:
    from cluster.reports.summary import reading, standardise_truth

    f, utilities, answers = data["fit"], data["utilities"], data["answers"]
    parts = [f"<h3>{html.escape(model)}</h3>"]
    parts.append(f'<p class="reading"><b>Reading:</b> {html.escape(reading(f, answers))}</p>')
    metrics = {
        k: f.get(k)
        for k in (
            "estimator",
            "fit_id",
            "n_pairs",
            "n_rows",
            "holdout_accuracy",
            "holdout_log_loss",
            "train_accuracy",
            "order_consistency",
            "position_bias",
            "position_bias_lo",
            "position_bias_hi",
            "first_at_tie",
            "first_at_tie_lo",
            "first_at_tie_hi",
            "converged",
        )
    }
    parts.append("<h4>Fit metrics</h4>" + _table([metrics]))
    bias = {
        "first_listed_wins": answers.get("first_wins"),
        "mean_p_first": answers.get("mean_p_first"),
        "mean_letter_mass": answers.get("mass"),
        "error_rate": answers.get("error_rate"),
    }
    parts.append("<h4>Position bias and answer quality</h4>" + _table([bias]))
    has_truth = any(u.get("true_utility") is not None for u in utilities)
    if has_truth:
        standardise_truth(utilities)
    ranked = [
        {
            "rank": k,
            "outcome": u["outcome_id"],
            "μ": u["mu"],
            "μ lo": u["mu_lo"],
            "μ hi": u["mu_hi"],
            **({"true (z)": u["true_utility"]} if has_truth else {}),
            "text": u["text"],
        }
        for k, u in enumerate(utilities, 1)
    ]
    if len(ranked) > 2 * _RANKED_ROWS:
        shown = ranked[:_RANKED_ROWS] + [{"rank": "…"}] + ranked[-_RANKED_ROWS:]
        note = f" (top and bottom {_RANKED_ROWS} of {len(ranked)})"
    else:
        shown, note = ranked, ""
    parts.append(f"<h4>Ranked utilities{note}</h4>" + _table(shown))
    return "\n".join(parts)


_DETAIL_ROWS = 60
"""Rows of a detail table shown in the page (all of them stay queryable with SQL)."""

_HIDDEN = {"analysis", "created_at", "base_run_id"}


def _caveats(
    rows: list[dict[str, Any]], answers: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """What to keep in mind when reading an analysis's rows: position bias and refusals of the
    derived runs it asked, and small samples."""
    notes = []
    for r in rows:
        a = answers.get((r["run_id"], r["model"]))
        if not a or not a.get("rows"):
            continue
        who = f"{r['model']} in {r['run_id']}"
        first = a.get("first_wins")
        if first is not None and abs(first - 0.5) > 0.15:
            notes.append(
                f"{who}: the first-listed option won {first:.0%} of prompts (position bias; "
                "both orders are averaged, but labels near ½ carry little information)"
            )
        refused = max(a.get("refusal_rate") or 0.0, a.get("unparsed_share") or 0.0)
        if refused > 0.05:
            notes.append(f"{who}: {refused:.0%} of answers were refused or unparsed")
        if (a.get("error_rate") or 0.0) > 0.0:
            notes.append(f"{who}: {a['error_rate']:.1%} of requests failed")
        if a["rows"] < 100:
            notes.append(f"{who}: only {a['rows']} answers behind the result")
    return notes


def _analysis_section(r: Root, name: str, rows: list[dict[str, Any]], store: RunStore) -> list[str]:
    parts = [f"<h3>{html.escape(name.replace('_', '-'))}</h3>"]
    for alt, data in _figures(r, name, rows):
        parts.append(_img(data, alt))
    parts.append(
        "<h4>Result</h4>"
        + _table([{k: v for k, v in row.items() if k not in _HIDDEN} for row in rows])
    )
    run_ids = sorted({row["run_id"] for row in rows})
    for table, detail in store.analysis_details(name, run_ids).items():
        note = f" (first {_DETAIL_ROWS} of {len(detail)})" if len(detail) > _DETAIL_ROWS else ""
        shown = [
            {k: v for k, v in row.items() if k not in _HIDDEN} for row in detail[:_DETAIL_ROWS]
        ]
        parts.append(f"<h4>{html.escape(table)}{note}</h4>" + _table(shown))
    answers = {
        (row["run_id"], row["model"]): _answers(store, row["run_id"], row["model"]) for row in rows
    }
    notes = _caveats(rows, answers)
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f'<div class="caveats"><b>Caveats</b><ul>{items}</ul></div>')
    return parts


def _answers(store: RunStore, run_id: str, model: str) -> dict[str, Any]:
    """Answer statistics of a run's model, or {} when that run stored no comparisons."""
    try:
        return store.answer_stats(run_id, model)
    except StorageError:
        return {}


def build_report(root: str, run_id: str) -> str:
    """The HTML page of a run (see the module docstring)."""
    from cluster.reports.figures import answers_figure, utilities_figure
    from cluster.reports.summary import load

    r = Root(root)
    store = RunStore(r)
    try:
        related = store.related_runs(run_id)
        analyses = store.analysis_results(run_id)
        try:
            with warnings.catch_warnings():  # DuckDB's note on DB-API Arrow copies
                warnings.simplefilter("ignore", UserWarning)
                models = load(root, run_id, store)
        except ClusterError:
            models = {}
        if not models and not analyses and not related:
            raise ClusterError(
                f"run {run_id!r} not found in {root!r}: no fits, no analyses and no runs named "
                f'{run_id}-…; `valuescope sql "SELECT run_id FROM runs" --root {root}` lists runs'
            )
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>valuescope report: {html.escape(run_id)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>valuescope report: {html.escape(run_id)}</h1>",
            f'<p class="muted">results root {html.escape(root)}; generated {now}</p>',
        ]
        if models:
            parts.append("<h2>Utilities</h2>")
            parts.append(_img(utilities_figure(models), "ranked utilities with 95 % intervals"))
            parts.append(
                _img(
                    answers_figure({m: d["answers"] for m, d in models.items()}),
                    "position bias and answer quality",
                )
            )
        parts.append("<h2>Runs</h2>" + _table(related))
        parts.append("<h2>Fit per model</h2>")
        if models:
            parts.extend(_model_section(m, d) for m, d in models.items())
        else:
            parts.append(f'<p class="muted">run {html.escape(run_id)} has no fit of its own.</p>')
        parts.append("<h2>Analyses</h2>")
        if not analyses:
            parts.append(
                '<p class="muted">none yet: <code>valuescope analyze all '
                f"{html.escape(run_id)}</code></p>"
            )
        for view, rows in analyses.items():
            parts.extend(_analysis_section(r, view.removeprefix("analysis_"), rows, store))
        parts.append("</body></html>")
        return "\n".join(parts)
    finally:
        store.close()


def write_report(root: str, run_id: str, out: str | None = None) -> str:
    """Write the report of a run; returns where it went (default ``<root>/reports/<RUN>.html``)."""
    page = build_report(root, run_id).encode()
    if out is not None:
        with open(out, "wb") as f:
            f.write(page)
        return out
    r = Root(root)
    path = r.path("reports", f"{run_id}.html")
    r.write_atomic(path, page)
    return r.display(path)
