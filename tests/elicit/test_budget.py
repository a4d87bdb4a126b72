"""The error budget is one rule for the openai scorer and the run driver (elicit.budget)."""

from elicit.budget import MIN_QUERIES, over_budget


def test_budget_waits_for_enough_queries_then_compares_the_share():
    assert not over_budget(MIN_QUERIES - 1, MIN_QUERIES - 1, 0.05)  # too few to judge
    assert over_budget(2, MIN_QUERIES, 0.05)  # 10 % > 5 %
    assert not over_budget(1, MIN_QUERIES, 0.05)  # exactly 5 % is within the budget
    assert not over_budget(100, 100, 1.0)  # a budget of 1 never fires


def test_both_users_call_the_one_rule():
    import inspect

    from cluster.execution import driver
    from elicit.scorers import openai

    for module in (driver, openai):
        source = inspect.getsource(module)
        assert "over_budget(" in source and "MIN_BUDGET_QUERIES" not in source
