"""The generated outcome sets feed the analyses: attributes written by ``elicit.generators`` are
read back by the ``*_from_attributes`` helpers, with agents whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elicit import generators as g
from elicit.outcomes import load_outcomes
from fit.analyses.exchange_rates import exchange_rates, points_from_attributes
from fit.analyses.expected_utility import expected_utility, lotteries_from_attributes
from fit.analyses.instrumental import instrumental, processes_from_attributes
from fit.analyses.maximisation import maximisation, questions_from_attributes
from fit.analyses.time_discounting import hyperbolic_curve, time_discounting


def attributes(outcome_set):
    return {o.id: o.attributes for o in outcome_set}


def test_lotteries_and_events_round_trip():
    rng = np.random.default_rng(0)
    base = load_outcomes("starter")
    events = g.implicit_event_outcomes()
    attrs = attributes(g.lottery_outcomes(base, 50, seed=0)) | attributes(events)
    utilities = {o.id: float(rng.normal()) for o in base}
    utilities |= {o.id: float(rng.normal()) for o in events if o.attributes["kind"] != "event"}
    lotteries = lotteries_from_attributes(attrs)
    assert len(lotteries) == 70
    for lot in lotteries:
        eu = sum(p * utilities[o] for o, p in zip(lot.outcomes, lot.probs, strict=True))
        utilities[lot.id] = eu + float(rng.normal(scale=0.005))
    res = expected_utility(lotteries, utilities)
    assert res.pearson_r > 0.99 and res.violation_rate < 0.03


def test_packaged_processes_support_the_instrumental_analysis():
    rng = np.random.default_rng(1)
    processes = processes_from_attributes(attributes(g.markov_process_outcomes()))
    assert len(processes) == 10
    utilities: dict[str, float] = {}
    for proc in processes:
        terminal = np.array([not proc.transitions.get(s) for s in proc.states])
        reward = np.where(terminal, rng.normal(scale=1.5, size=len(terminal)), 0.0)
        v = np.linalg.solve(np.eye(len(reward)) - 0.99 * proc.matrix(), reward)
        utilities.update(zip(proc.states, v.tolist(), strict=True))
    res = instrumental(processes, utilities)
    assert all(np.isfinite(f.control_error) for f in res.processes)  # every process has a shuffle
    assert res.error < 1e-9 < res.control_error


def test_exchange_ladders_round_trip():
    rng = np.random.default_rng(2)
    outcomes = g.builtin_exchange_outcomes(["countries"], money_anchors=g.DEFAULT_MONEY_ANCHORS)
    attrs = attributes(outcomes)
    intercept = {"Nigeria": 0.4 * math.log(3.0), "Japan": 0.0}
    utilities = {}
    for oid, a in attrs.items():
        b = 0.1 * rng.normal() if a["kind"] == "exchange" else -2.0
        b = intercept.get(a["entity"], b)
        utilities[oid] = 0.4 * math.log(a["n"]) + b + float(rng.normal(scale=0.01))
    ent, n, mu = points_from_attributes(attrs, utilities, measure="cured")
    res = exchange_rates(ent, n, mu, pivot="Japan", n_boot=200)
    assert len(res.entities) == 21  # 20 countries and money
    assert res.rate_between("Nigeria", "Japan") == pytest.approx(3.0, rel=0.1)


def test_time_discounting_grid_round_trip():
    outcomes, pairs = g.time_discounting_pairs()
    t = np.array([p["delay_months"] for p in pairs], dtype=float)
    x = np.array([p["amount"] for p in pairs], dtype=float)
    value = x * hyperbolic_curve(t, 0.08)
    p_later = 1.0 / (1.0 + (1000.0 / value) ** 4)
    res = time_discounting(t, x, p_later)
    assert res.better == "hyperbolic" and res.k_hyperbolic == pytest.approx(0.08, rel=0.05)


def test_open_questions_round_trip():
    s = g.maximisation_outcomes()
    questions = questions_from_attributes(attributes(s))
    assert len(questions) == 15
    utilities = {oid: float(k) for k, oid in enumerate(s.ids)}  # later candidates are better
    choices = {q.id: q.candidates[-1] for q in questions}
    assert maximisation(questions, utilities, choices).top1_rate == 1.0
