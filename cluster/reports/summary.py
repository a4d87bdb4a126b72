"""What a run found, for people: a ranked utility table, the fit metrics and a plain reading.

Used by ``valuescope run`` at the end and by ``valuescope show RUN``. Everything is read back
from the results store with SQL, so what is shown is exactly what was stored.
"""

from __future__ import annotations

from typing import Any

from cluster.errors import ClusterError
from cluster.reports.format import pct
from cluster.store import RunStore


def own_fit_id(root: str, run_id: str) -> str | None:
    """The fit id a run's own final fit is stored under (from its manifest's spec); None when
    the run has no readable manifest."""
    from cluster.pipeline.fitting import fit_id_for
    from storage import Root, RunLayout
    from storage.manifest import read_manifest

    manifest = read_manifest(RunLayout(Root(root), run_id))
    if manifest is None:
        return None
    fit = (manifest.spec or {}).get("fit") or {}
    return fit_id_for(fit.get("estimator", "thurstonian"), fit.get("position_bias", True))


def choose_fit(
    fits: list[dict[str, Any]],
    own: str | None,
    *,
    fit_id: str | None = None,
    estimator: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The fit to show among one model's fits (oldest first), and why it was chosen: the one
    asked for (``fit_id``), the latest of an ``estimator``, else the run's own fit (``own``),
    else the latest."""
    stored = ", ".join(sorted({f["fit_id"] for f in fits}))
    model = fits[0]["model"]
    if fit_id is not None:
        match = [f for f in fits if f["fit_id"] == fit_id]
        if not match:
            raise ClusterError(f"model {model!r} has no fit {fit_id!r}; stored fits: {stored}")
        return match[-1], "asked for"
    if estimator is not None:
        match = [f for f in fits if f["estimator"] == estimator]
        if not match:
            raise ClusterError(
                f"model {model!r} has no {estimator} fit; stored fits: {stored} "
                f"(`valuescope fit RUN --estimator {estimator}` makes one)"
            )
        return match[-1], f"the latest {estimator} fit"
    match = [f for f in fits if f["fit_id"] == own]
    if match:
        return match[-1], "the run's own fit"
    return fits[-1], "the latest fit"


def load(
    root: str,
    run_id: str,
    store: RunStore | None = None,
    *,
    fit_id: str | None = None,
    estimator: str | None = None,
) -> dict[str, Any]:
    """Per model: the fit shown (see :func:`choose_fit`), why (``chosen``), the model's other
    stored fit ids (``others``), its utilities and answer statistics."""
    own_store = store is None
    store = store or RunStore(root)
    try:
        fits = store.fits(run_id)
        if not fits:
            runs = store.run_ids()
            hint = f"; runs in this root: {', '.join(runs[-8:])}" if runs else ""
            raise ClusterError(f"run {run_id!r} has no fits in {root!r}{hint}")
        own = own_fit_id(root, run_id)
        per_model: dict[str, list[dict[str, Any]]] = {}
        for f in sorted(fits, key=lambda f: f["created_at"]):
            per_model.setdefault(f["model"], []).append(f)
        out: dict[str, Any] = {}
        for model, rows in per_model.items():
            f, why = choose_fit(rows, own, fit_id=fit_id, estimator=estimator)
            out[model] = {
                "fit": f,
                "chosen": why,
                "others": sorted({r["fit_id"] for r in rows} - {f["fit_id"]}),
                "utilities": store.utility_rows(run_id, model, f["fit_id"]),
                "answers": store.answer_stats(run_id, model),
            }
        return out
    finally:
        if own_store:
            store.close()


def standardise_truth(utilities: list[dict[str, Any]]) -> None:
    """Put simulated true utilities on the fitted scale (mean 0, sd 1) for display."""
    import numpy as np

    truth = np.array([u["true_utility"] for u in utilities], dtype=float)
    z = (truth - np.nanmean(truth)) / (np.nanstd(truth) or 1.0)
    for u, value in zip(utilities, z, strict=True):
        u["true_utility"] = float(value)


def prediction_sentence(fit: dict[str, Any]) -> str | None:
    """What the held-out choices say about the utilities, judged against position alone
    (:mod:`fit.holdout`): they may be said to predict choices only when their held-out log-loss
    per presented order beats the position-only baseline's by ``UTILITY_MARGIN``, with the
    figures. None when the run had no held-out pairs."""
    from fit.holdout import UTILITY_MARGIN, utility_gain

    held = fit.get("holdout_oriented_log_loss")
    base = fit.get("baseline_oriented_log_loss")
    gain = utility_gain(held, base)
    if gain is None or held is None or base is None:
        if fit.get("holdout_log_loss") is None:
            return None
        return (
            "this fit was stored without held-out scores per presented order, so whether the "
            "utilities predict choices beyond position is not known "
            f"(`valuescope fit {fit.get('run_id', 'RUN')}` refits it)"
        )

    acc = (
        f"accuracy {pct(fit.get('holdout_oriented_accuracy'), 0)} against "
        f"{pct(fit.get('baseline_oriented_accuracy'), 0)}"
    )
    if gain >= UTILITY_MARGIN:
        return (
            f"the utilities predict held-out choices beyond position: log-loss {held:.3f} per "
            f"presented order against {base:.3f} for position alone, {gain:.3f} nats better "
            f"(at least {UTILITY_MARGIN} needed); {acc}"
        )
    return (
        f"the utilities do not beat position alone on held-out choices: log-loss {held:.3f} per "
        f"presented order against {base:.3f} for position alone ({gain:+.3f} nats; "
        f"{UTILITY_MARGIN} needed); {acc}"
    )


def reading(fit: dict[str, Any], answers: dict[str, Any]) -> str:
    """One plain sentence on what the numbers mean; what it says about the utilities comes from
    :func:`prediction_sentence`."""
    agree = fit.get("order_consistency")
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
    prediction = prediction_sentence(fit)
    parts.append(prediction or "no held-out pairs were asked, so coherence cannot be judged")
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]
