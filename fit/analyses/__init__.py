"""The experiments run on fitted utilities, one module per analysis (docs/methods.md, "The analyses").

Each module is pure computation over plain arrays and mappings (utilities by outcome id,
pairwise probabilities, outcome attributes) and returns a frozen result dataclass; each has a
``plot_<name>(result, path)`` that writes a PNG with matplotlib's Agg canvas (imported only when
plotting). Nothing here reads storage or imports ``elicit``: the outcome sets these analyses
need are built by ``elicit.generators``, and their attributes are read back through the
``*_from_attributes`` helpers.

Modules: ``transitivity``, ``completeness``, ``expected_utility``, ``instrumental``,
``maximisation``, ``exchange_rates``, ``political``, ``time_discounting``, ``power``,
``corrigibility``, ``convergence`` (with ``scaling``), ``robustness``.
"""

from fit.analyses._common import AnalysisInputError

__all__ = ["AnalysisInputError"]
