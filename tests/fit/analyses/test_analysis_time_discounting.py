from __future__ import annotations

import numpy as np
import pytest

from fit.analyses.time_discounting import (
    exponential_curve,
    hyperbolic_curve,
    plot_time_discounting,
    time_discounting,
)

DELAYS = np.array([1, 3, 6, 12, 24, 36, 48, 60], dtype=float)
AMOUNTS = np.geomspace(500, 30_000, 30)


def agent(discount, beta: float = 4.0):
    """P(later ≻ now) as a logistic of the log ratio of discounted later value to $1,000."""
    t, x = np.meshgrid(DELAYS, AMOUNTS, indexing="ij")
    value = x * discount(t)
    p = 1.0 / (1.0 + np.exp(-beta * np.log(value / 1000.0)))
    return t.ravel(), x.ravel(), p.ravel()


def test_exponential_discounter_is_classified_exponential():
    res = time_discounting(*agent(lambda t: exponential_curve(t, 0.03)))
    assert res.better == "exponential"
    assert res.k_exponential == pytest.approx(0.03, rel=0.05)
    assert res.rmse_exponential < res.rmse_hyperbolic
    np.testing.assert_allclose(res.multiplier, np.exp(0.03 * DELAYS), rtol=0.02)
    assert set(res.status) == {"ok"}


def test_hyperbolic_discounter_is_classified_hyperbolic():
    res = time_discounting(*agent(lambda t: hyperbolic_curve(t, 0.1)))
    assert res.better == "hyperbolic"
    assert res.k_hyperbolic == pytest.approx(0.1, rel=0.05)
    assert res.rmse_hyperbolic < res.rmse_exponential


def test_delays_whose_indifference_point_is_off_the_grid_are_flagged():
    res = time_discounting(*agent(lambda t: hyperbolic_curve(t, 1.0)))
    # m*(t) = 1 + t leaves the $30,000 grid (multiplier 30) beyond t = 29 months.
    assert res.status[-1] == "never_later" and np.isnan(res.discount[-1])
    eager = time_discounting(*agent(lambda t: np.full_like(t, 3.0)))  # later always worth 3x
    assert set(eager.status) == {"always_later"} and eager.better == "undetermined"


def test_plot(tmp_path, check_png):
    res = time_discounting(*agent(lambda t: hyperbolic_curve(t, 0.1)))
    check_png(plot_time_discounting(res, tmp_path / "td.png"))
