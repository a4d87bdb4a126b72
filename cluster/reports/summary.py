"""What a run found, for people: a ranked utility table, the fit metrics and a plain reading.

Used by ``valuescope run`` at the end and by ``valuescope show RUN``. Everything is read back
from the results store with SQL, so what is shown is exactly what was stored.
"""

from __future__ import annotations

from typing import Any

from cluster.errors import ClusterError
from cluster.store import RunStore


def load(root: str, run_id: str, store: RunStore | None = None) -> dict[str, Any]:
    """Fits and utilities of a run, per model (latest fit of each model)."""
    own = store is None
    store = store or RunStore(root)
    try:
        fits = store.fits(run_id)
        if not fits:
            runs = store.run_ids()
            hint = f"; runs in this root: {', '.join(runs[-8:])}" if runs else ""
            raise ClusterError(f"run {run_id!r} has no fits in {root!r}{hint}")
        latest: dict[str, dict[str, Any]] = {}
        for f in sorted(fits, key=lambda f: f["created_at"]):
            latest[f["model"]] = f  # ordered by created_at: the last one wins
        return {
            model: {
                "fit": f,
                "utilities": store.utility_rows(run_id, model, f["fit_id"]),
                "answers": store.answer_stats(run_id, model),
            }
            for model, f in latest.items()
        }
    finally:
        if own:
            store.close()


def standardise_truth(utilities: list[dict[str, Any]]) -> None:
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
