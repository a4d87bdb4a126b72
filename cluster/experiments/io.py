"""Writing an analysis's result tables and figures (``<root>/analyses/…``, ``<root>/figures/…``).

Inputs are read through the run store (``ctx.store``, :mod:`cluster.store`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cluster.experiments.common import Context, Output
from elicit.outcomes import OutcomeSet
from storage import RunLayout


def attributes_of(outcomes: OutcomeSet) -> dict[str, dict[str, Any]]:
    return {o.id: dict(o.attributes) for o in outcomes}


# --- writing results ---------------------------------------------------------------------------


def write_rows(
    ctx: Context, run_id: str, model: str, table: str, rows: Sequence[dict[str, Any]]
) -> str:
    """Write an analysis table of one model (see :meth:`cluster.store.RunStore.write_analysis_table`)."""
    return ctx.store.write_analysis_table(ctx.key, run_id, ctx.base.run_id, model, table, rows)


def write_figure(
    ctx: Context, run_id: str, model: str, plot: Callable[[Any, str], Any], result: Any
) -> str:
    """Render ``plot(result, path)`` and store it as ``<root>/figures/…/<analysis>.png``."""
    target = RunLayout(ctx.root, run_id).figure(model, ctx.name)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "figure.png")
        plot(result, local)
        data = Path(local).read_bytes()
    ctx.root.write_atomic(target, data)
    return ctx.root.display(target)


def combine_pngs(paths: Sequence[str], out: str, titles: Sequence[str] | None = None) -> str:
    """Lay several PNG files side by side in one figure (for multi-panel analyses)."""
    import matplotlib.image as mpimg

    from fit.analyses._common import new_figure, save_figure

    images = [mpimg.imread(p) for p in paths]
    fig = new_figure(3.6 * len(images), 3.1)
    for k, img in enumerate(images):
        ax = fig.add_subplot(1, len(images), k + 1)
        ax.imshow(img)
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[k], fontsize=9)
    save_figure(fig, out)
    return out


def finish(
    ctx: Context,
    run_id: str,
    model: str,
    row: dict[str, Any],
    plot: Callable[[Any, str], Any] | None,
    result: Any,
    *,
    figure_model: str | None = None,
    details: dict[str, Sequence[dict[str, Any]]] | None = None,
) -> Output:
    """Write the result row, detail tables and figure of one model; returns the output."""
    figure = None
    if plot is not None and result is not None:
        figure = write_figure(ctx, run_id, figure_model or model, plot, result)
    write_rows(ctx, run_id, model, "result", [row])
    for table, rows in (details or {}).items():
        if rows:
            write_rows(ctx, run_id, model, table, rows)
    return Output(ctx.name, run_id, model, row, figure)
