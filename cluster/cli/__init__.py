"""The ``valuescope`` command line: only this package prints.

``commands`` holds the group and the run/result commands (run, elicit, preview, fit, show, sql,
validate, models, outcomes, env); ``analyze``, ``control``, ``probe`` and ``jobs`` register the
analysis, control, probe and cluster commands; ``options`` turns a spec file or flags into a spec;
``show`` prints a run's summary; ``display`` holds the table helpers.
"""

from cluster.cli.commands import cli, main

__all__ = ["cli", "main"]
