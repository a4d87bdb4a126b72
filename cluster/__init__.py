"""valuescope's Python API: the same verbs as the ``valuescope`` command line.

Every name is imported on first use, so ``import cluster`` (and ``valuescope --help``) stays
fast; Ray, torch and the engines load only when a run needs them::

    import cluster

    spec = cluster.load_spec("spec.yaml")              # or cluster.RunSpec(...)
    runs = cluster.run(spec)                            # elicit → fit → tables, per model
    cluster.refit(spec.root, spec.resolved_run_id(), estimator="bt")
    summary = cluster.show(spec.root, spec.resolved_run_id())   # data, not printed
    cluster.analyze("transitivity", run_id=spec.resolved_run_id(), root=spec.root)
    page = cluster.report(spec.root, spec.resolved_run_id())    # path of the HTML page
    with cluster.RunStore(spec.root) as store:
        fits = store.fits(spec.resolved_run_id())

The packages behind them: ``cluster.pipeline`` (run, elicit, preview, fitting of a run),
``cluster.execution`` (driver, replicas, Ray), ``cluster.jobs`` (Ray Jobs, sweeps),
``cluster.experiments`` (the analyses), ``cluster.control`` (assembly, fine-tuning, probes),
``cluster.reports`` (summary, HTML report), ``cluster.store`` (the results catalog).
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    # name: (module, attribute)
    "RunSpec": ("cluster.spec", "RunSpec"),
    "load_spec": ("cluster.spec", "load_spec"),
    "parse_spec": ("cluster.spec", "parse_spec"),
    "RunStore": ("cluster.store", "RunStore"),
    "run": ("cluster.pipeline.run", "run"),
    "elicit": ("cluster.pipeline.run", "elicit"),
    "preview": ("cluster.pipeline.preview", "preview"),
    "refit": ("cluster.pipeline.fitting", "refit"),
    "fit": ("cluster.pipeline.fitting", "refit"),
    "show": ("cluster.reports.summary", "load"),
    "analyze": ("cluster.experiments.analyze", "analyze"),
    "analyze_all": ("cluster.experiments.analyze", "analyze_all"),
    "AnalysisOptions": ("cluster.experiments.common", "Options"),
    "report": ("cluster.reports.html", "write_report"),
    "submit": ("cluster.jobs.ray_jobs", "submit"),
    "status": ("cluster.jobs.ray_jobs", "status"),
    "logs": ("cluster.jobs.ray_jobs", "logs"),
    "cancel": ("cluster.jobs.ray_jobs", "cancel"),
    "load_sweep": ("cluster.jobs.sweep", "load_sweep"),
    "sweep": ("cluster.jobs.sweep", "run_sweep"),
    "probe": ("cluster.control.probe", "probe"),
    "run_assembly": ("cluster.control.assembly", "run_assembly"),
    "run_control": ("cluster.control.steer", "run_control"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _API[name]
    except KeyError:
        raise AttributeError(f"module 'cluster' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
