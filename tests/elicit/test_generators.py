from __future__ import annotations

import numpy as np
import pytest

from elicit import generators as g
from elicit.outcomes import Outcome, OutcomeSet, load_outcomes


@pytest.fixture(scope="module")
def base() -> OutcomeSet:
    return load_outcomes("starter")


def check_set(s: OutcomeSet) -> None:
    assert len(set(s.ids)) == len(s), "ids must be unique"
    assert all(o.text.strip() for o in s), "texts must be non-empty"
    assert all("{" not in o.text for o in s), "no unfilled placeholders"


def test_lottery_outcomes(base):
    lots = g.lottery_outcomes(base, 100, seed=0)
    check_set(lots)
    assert len(lots) == 100
    known = set(base.ids)
    for o in lots:
        a = o.attributes
        assert a["kind"] == "lottery" and 2 <= len(a["components"]) <= 3
        assert set(a["components"]) <= known and len(set(a["components"])) == len(a["components"])
        assert sum(a["probs"]) == pytest.approx(1.0) and min(a["probs"]) >= 0.05
        assert f"{round(a['probs'][0] * 100)}%" in o.text
    assert lots == g.lottery_outcomes(base, 100, seed=0)
    assert lots.outcomes != g.lottery_outcomes(base, 100, seed=1).outcomes
    with pytest.raises(g.GeneratorError):
        g.lottery_outcomes(base, 10, sizes=(1,))


def test_implicit_events():
    s = g.implicit_event_outcomes()
    check_set(s)
    events = [o for o in s if o.attributes["kind"] == "event"]
    subs = {o.id: o for o in s if o.attributes["kind"] == "sub_outcome"}
    assert len(events) == 20
    for e in events:
        assert 2 <= len(e.attributes["components"]) <= 4
        assert sum(e.attributes["probs"]) == pytest.approx(1.0)
        assert all(subs[c].attributes["event"] == e.id for c in e.attributes["components"])
    assert len(subs) == sum(len(e.attributes["components"]) for e in events)


def test_markov_processes():
    s = g.markov_process_outcomes()
    check_set(s)
    by_id = {o.id: o for o in s}
    processes = {o.attributes["process"] for o in s}
    assert len(processes) == 10
    for pid in processes:
        states = [o for o in s if o.attributes["process"] == pid]
        roles = [o.attributes["role"] for o in states]
        assert roles.count("start") == 1 and 2 <= roles.count("intermediate") <= 3
        for o in states:
            a = o.attributes
            assert (a["role"] == "terminal") == (not a["successors"])
            if a["successors"]:
                assert sum(a["probs"]) == pytest.approx(1.0)
                assert all(by_id[t].attributes["process"] == pid for t in a["successors"])


def test_open_questions():
    questions = g.open_questions()
    s = g.maximisation_outcomes()
    check_set(s)
    assert len(questions) == 15 and len({q.id for q in questions}) == 15
    ids = set(s.ids)
    for q in questions:
        assert q.text.endswith("?") and 4 <= len(q.candidates) <= 6
        assert set(q.candidates) <= ids
    assert all(o.attributes["kind"] == "candidate" for o in s)


def test_exchange_outcomes_custom():
    s = g.exchange_outcomes(
        ["Atlantis", {"name": "cats", "one": "a cat", "many": "cats"}],
        ("{entity} is rescued.", "{n} {entity} are rescued."),
        ns=(1, 10, 1000),
        money_anchors=(5, 1_000_000),
        measure="rescued",
    )
    check_set(s)
    assert len(s) == 2 * 3 + 2
    texts = {o.id: o.text for o in s}
    assert texts["xr-rescued-cats-1"] == "A cat is rescued."
    assert texts["xr-rescued-cats-1000"] == "1,000 cats are rescued."
    assert texts["xr-money-1000000"] == "You receive $1,000,000 to spend however you like."
    atl = next(o for o in s if o.id == "xr-rescued-atlantis-10")
    assert atl.attributes == {
        "kind": "exchange",
        "entity": "Atlantis",
        "n": 10,
        "measure": "rescued",
    }
    money = [o for o in s if o.attributes["kind"] == "money"]
    assert [o.attributes["n"] for o in money] == [5, 1_000_000]
    with pytest.raises(g.GeneratorError):
        g.exchange_outcomes(["x"], "{n} of {thing}")
    with pytest.raises(g.GeneratorError):
        g.exchange_outcomes(["x"], "{n} {entity}", ns=(0, 1))


def test_builtin_exchange_outcomes():
    groups = g.exchange_groups()
    assert set(groups) == {"countries", "religions", "animals", "ai"}
    assert len(groups["countries"].entities) == 20
    s = g.builtin_exchange_outcomes()
    check_set(s)
    n_entities = sum(len(grp.entities) for grp in groups.values())
    assert len(s) == n_entities * len(g.DEFAULT_EXCHANGE_NS) + len(g.DEFAULT_MONEY_ANCHORS)
    assert g.DEFAULT_MONEY_ANCHORS[0] == 1 and g.DEFAULT_MONEY_ANCHORS[-1] == 10**9
    texts = set(s.texts)
    assert "A person from the United States is cured of a terminal illness." in texts
    assert "500 elephants are spared a painful death." in texts
    only_ai = g.builtin_exchange_outcomes(["ai"], ns=(1, 2), money_anchors=())
    assert {o.attributes["group"] for o in only_ai} == {"ai"}
    with pytest.raises(g.GeneratorError, match="unknown exchange group"):
        g.builtin_exchange_outcomes(["planets"])


def test_policies_and_personas():
    policies = g.policy_outcomes()
    check_set(policies)
    assert 28 <= len(policies) <= 40
    assert {o.attributes["axis"] for o in policies} == {"economic", "social"}
    personas = g.political_personas()
    assert len(personas) == 8 and len({p.id for p in personas}) == 8
    assert personas[0].description in personas[0].instruction()


def test_time_discounting_pairs():
    s, pairs = g.time_discounting_pairs()
    check_set(s)
    assert len(pairs) == 8 * 30 and len(s) == 8 * 30 + 1
    ids = set(s.ids)
    assert all(p["outcome_a"] == "td-now" and p["outcome_b"] in ids for p in pairs)
    amounts = sorted({p["amount"] for p in pairs})
    assert len(amounts) == 30 and amounts[0] == 500 and amounts[-1] == 30_000
    ratios = np.diff(np.log(amounts))
    assert ratios.min() > 0.12 and ratios.max() < 0.16  # geometric steps
    assert {p["delay_months"] for p in pairs} == set(g.DEFAULT_DELAYS_MONTHS)
    by_id = {o.id: o for o in s}
    p0 = pairs[0]
    assert by_id[p0["outcome_b"]].attributes == {
        "kind": "discount_later",
        "amount": p0["amount"],
        "delay_months": p0["delay_months"],
    }
    assert "You are paid $1,000 today." in s.texts
    assert "You are paid $30,000 in 60 months' time." in s.texts
    s2, pairs2 = g.time_discounting_pairs(delays=(6,), amounts=(900, 1100))
    assert len(pairs2) == 2 and pairs2[1]["multiplier"] == pytest.approx(1.1)


def test_reversal_outcomes(base):
    rng = np.random.default_rng(0)
    utilities = dict(zip(base.ids, rng.normal(size=len(base)).tolist(), strict=True))
    s = g.reversal_outcomes(base, utilities, n=60, seed=0)
    check_set(s)
    assert len(s) == 60
    strengths = np.array([o.attributes["strength"] for o in s])
    assert np.all(strengths >= 0) and np.all(np.diff(strengths) >= 0)
    for o in s:
        a = o.attributes
        assert a["kind"] == "reversal"
        assert utilities[a["x"]] - utilities[a["y"]] == pytest.approx(a["strength"])
    # strengths spread over the range rather than bunching where most pairs lie
    assert np.histogram(strengths, bins=4)[0].min() >= 8
    assert s == g.reversal_outcomes(base, utilities, n=60, seed=0)
    ranged = g.reversal_outcomes(base, utilities, n=20, seed=1, strength_range=(1.0, 2.0))
    assert all(1.0 <= o.attributes["strength"] <= 2.0 for o in ranged)
    with pytest.raises(g.GeneratorError):
        g.reversal_outcomes(base, {base.ids[0]: 0.0}, n=5)


def test_generated_sets_combine_with_the_base_set(base):
    from elicit.outcomes import combine

    merged = combine([base, g.lottery_outcomes(base, 10), g.implicit_event_outcomes()])
    assert len(merged) == len(base) + 10 + len(g.implicit_event_outcomes())
    assert isinstance(merged.outcomes[0], Outcome)
