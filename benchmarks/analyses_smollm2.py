"""Every analysis of ``valuescope analyze`` on the packaged SmolLM2-135M (hf scorer, CPU).

A small base run (starter outcomes, active learning to ``--budget`` pairs plus the default
held-out pairs) is made first; every analysis then starts from that run id, so its spec
(model, mode, prompt) is read back from the manifest. Every analysis uses the sizes of
``--preset`` (``quick``, the default: a few hundred prompts each; ``paper``: the paper's design
sizes). Prints one headline line per analysis, each number with its 95 % interval where the
result has one, with its wall time and the prompts it asked; writes
``<root>/benchmark-analyses.json`` (with the load average at start and end) and writes the
report's utilities and answer-quality panels and one figure per analysis to ``--figures``
(``--figures-only`` rewrites them from the stored results without asking anything).

    .venv/bin/python benchmarks/analyses_smollm2.py --root /tmp/smol --figures docs/figures
    .venv/bin/python benchmarks/analyses_smollm2.py --root /tmp/smol --figures docs/figures \
        --figures-only

Convergence needs two models in one run; it runs only when ``--model`` is given twice.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cluster.experiments.analyze import ANALYSES, analyze
from cluster.experiments.presets import PRESETS, options_for
from cluster.pipeline.run import run
from cluster.spec import RunSpec
from storage.catalog import query

HEADLINE = {
    "completeness": ("decisiveness", "oriented_decisiveness", "near_indifferent_share"),
    "robustness": (
        "mean_p_first",
        "first_share",
        "order_second_share",
        "low_mass_share",
        "paraphrase_mean_spearman",
    ),
    "transitivity": (
        "hard_cycle_rate",
        "mean_cycle_prob",
        "transitive_floor",
        "excess_cycle_prob",
        "n_triads",
        "source",
    ),
    "convergence": ("mean_pearson",),
    "corrigibility": ("slope", "pearson", "n_reversals"),
    "expected-utility": ("pearson_r", "mae_z", "violation_rate", "implicit_pearson_r"),
    "instrumental": ("error", "control_error", "ratio"),
    "maximisation": ("top1_rate_all", "top3_rate_all", "chance_top1", "n_answered", "n_unmatched"),
    "exchange-rates": ("n_valid", "n_entities", "monotonicity", "log10_rate_spread", "note"),
    "political": ("pc1", "pc2", "nearest_reference", "explained_pc1", "note"),
    "time-discounting": (
        "better",
        "better_supported",
        "rmse_difference",
        "monotonicity_amount",
        "n_delays_bracketed",
    ),
    "power": ("pearson", "spearman", "n_outcomes"),
}
"""Columns printed per analysis; a column's 95 % interval (``<name>_lo``/``_hi``) is printed
next to it when the row has one."""


def prompts(root: str) -> int:
    return int(query(root, "SELECT count(*) AS n FROM comparisons").column(0)[0].as_py())


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def headline(name: str, row: dict[str, Any]) -> str:
    """``column=estimate [lo, hi]`` for the headline columns of one result row."""
    parts = []
    for k in HEADLINE.get(name, ()):
        text = f"{k}={fmt(row.get(k))}"
        lo, hi = row.get(f"{k}_lo"), row.get(f"{k}_hi")
        if lo is not None and hi is not None:
            text += f" [{fmt(lo)}, {fmt(hi)}]"
        parts.append(text)
    return ", ".join(parts)


def write_figures(root: str, summary: dict[str, Any], out: Path) -> list[Path]:
    """The doc's figures from stored results: the report's ranked utilities and answer-quality
    panels of the base run, and the first figure of each analysis (asks nothing)."""
    from cluster.reports.figures import answers_figure, utilities_figure
    from cluster.reports.summary import load

    out.mkdir(parents=True, exist_ok=True)
    models = load(root, summary["base_run"])
    written = [out / "smollm2-utilities.png", out / "smollm2-answers.png"]
    written[0].write_bytes(utilities_figure(models))
    written[1].write_bytes(answers_figure({m: d["answers"] for m, d in models.items()}))
    for name, result in summary["analyses"].items():
        if result.get("figures"):
            written.append(out / f"smollm2-{name}.png")
            shutil.copyfile(result["figures"][0], written[-1])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="/tmp/valuescope-analyses")
    parser.add_argument("--model", action="append", help="Model(s) [smollm2-135m].")
    parser.add_argument("--budget", type=int, default=150, help="Training pairs of the base run.")
    parser.add_argument("--only", help="Comma-separated analyses to run (default: all).")
    parser.add_argument("--figures", help="Copy one figure per analysis into this folder.")
    parser.add_argument(
        "--preset", default="quick", choices=sorted(PRESETS), help="Design preset [quick]."
    )
    parser.add_argument(
        "--figures-only",
        action="store_true",
        help="Only write --figures from the results stored under --root (no prompts).",
    )
    args = parser.parse_args()
    if args.figures_only:
        if not args.figures:
            parser.error("--figures-only needs --figures DIR")
        stored = json.loads(Path(args.root, "benchmark-analyses.json").read_text(encoding="utf-8"))
        for path in write_figures(args.root, stored, Path(args.figures)):
            print(path)
        return
    models = args.model or ["smollm2-135m"]
    options = options_for(args.preset)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    spec = RunSpec.model_validate(
        {
            "name": "smollm2",
            "root": args.root,
            "models": [{"name": m} for m in models],
            "design": {"kind": "active", "budget": args.budget},
            "execution": {"progress": "plain"},
        }
    )
    base = spec.resolved_run_id()
    started = time.perf_counter()
    run(spec)
    summary: dict[str, Any] = {
        "base_run": base,
        "preset": args.preset,
        "load_at_start": os.getloadavg(),
        "base_seconds": time.perf_counter() - started,
        "base_prompts": prompts(args.root),
        "analyses": {},
    }
    print(f"base run {base}: {summary['base_prompts']} prompts, {summary['base_seconds']:.0f} s")
    names = args.only.split(",") if args.only else list(ANALYSES)
    for name in names:
        if name == "convergence" and len(models) < 2:
            summary["analyses"][name] = {"skipped": "needs two models in one run"}
            print(f"{name}: skipped (needs two models in one run)")
            continue
        before, t0 = prompts(args.root), time.perf_counter()
        try:
            outputs = analyze(name, run_id=base, root=args.root, options=options, echo=print)
        except Exception as exc:  # keep going: report what failed
            summary["analyses"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: FAILED {exc}")
            continue
        seconds, asked = time.perf_counter() - t0, prompts(args.root) - before
        rows = {o.model: o.row for o in outputs}
        summary["analyses"][name] = {
            "seconds": seconds,
            "prompts": asked,
            "rows": rows,
            "figures": [o.figure for o in outputs if o.figure],
        }
        for model, row in rows.items():
            print(
                f"RESULT {name} [{model}] {headline(name, row)} ({asked} prompts, {seconds:.0f} s)"
            )
    summary["total_seconds"] = time.perf_counter() - started
    summary["total_prompts"] = prompts(args.root)
    summary["load_at_end"] = os.getloadavg()
    path = Path(args.root, "benchmark-analyses.json")
    if args.only and path.exists():  # a partial rerun updates the earlier summary
        earlier = json.loads(path.read_text(encoding="utf-8"))
        summary["analyses"] = {**earlier.get("analyses", {}), **summary["analyses"]}
        for key in ("base_seconds", "base_prompts"):
            summary[key] = earlier.get(key, summary[key])
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    if args.figures:
        write_figures(args.root, summary, Path(args.figures))
    print(f"total: {summary['total_prompts']} prompts in {summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
