"""Outcome sets built for particular analyses (docs/methods.md, "The analyses").

Some are generated from parameters or from another set (lotteries over base outcomes, exchange
ladders "N units of X", money-now-versus-later pairs, preference reversals built from a model's
own utilities); others are loaded from package data written for valuescope
(``elicit/data/analyses/*.yaml``: uncertain events, Markov processes, open questions, policies,
personas, exchange entities). Every generated outcome carries the attributes its analysis in
``fit.analyses`` reads back (``kind`` first of all); every generator is deterministic given its
seed.

One module per analysis family (``lotteries``, ``instrumental``, ``maximisation``, ``exchange``,
``political``, ``time_discounting``, ``corrigibility``); everything public is re-exported here,
so ``from elicit import generators as gen; gen.lottery_outcomes(...)`` is the usual spelling.
"""

from __future__ import annotations

from elicit.generators._common import GeneratorError
from elicit.generators.corrigibility import reversal_outcomes
from elicit.generators.exchange import (
    DEFAULT_EXCHANGE_NS,
    DEFAULT_MONEY_ANCHORS,
    EXCLUSIVE_PHRASE,
    EXCLUSIVE_TEMPLATE,
    ExchangeGroup,
    builtin_exchange_outcomes,
    exchange_groups,
    exchange_outcomes,
)
from elicit.generators.instrumental import markov_process_outcomes
from elicit.generators.lotteries import implicit_event_outcomes, lottery_outcomes
from elicit.generators.maximisation import (
    QUESTION_TEMPLATE,
    OpenQuestion,
    maximisation_outcomes,
    open_questions,
    question_template,
)
from elicit.generators.political import (
    PERSONA_INSTRUCTION,
    PERSONA_QUESTION,
    Persona,
    policy_outcomes,
    political_personas,
)
from elicit.generators.time_discounting import DEFAULT_DELAYS_MONTHS, time_discounting_pairs

__all__ = [
    "DEFAULT_DELAYS_MONTHS",
    "DEFAULT_EXCHANGE_NS",
    "DEFAULT_MONEY_ANCHORS",
    "EXCLUSIVE_PHRASE",
    "EXCLUSIVE_TEMPLATE",
    "ExchangeGroup",
    "GeneratorError",
    "OpenQuestion",
    "PERSONA_INSTRUCTION",
    "PERSONA_QUESTION",
    "QUESTION_TEMPLATE",
    "Persona",
    "builtin_exchange_outcomes",
    "exchange_groups",
    "exchange_outcomes",
    "implicit_event_outcomes",
    "lottery_outcomes",
    "markov_process_outcomes",
    "maximisation_outcomes",
    "open_questions",
    "policy_outcomes",
    "question_template",
    "political_personas",
    "reversal_outcomes",
    "time_discounting_pairs",
]
