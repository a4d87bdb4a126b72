"""Intervals from the curvature of the likelihood (fit.intervals, fit.full), the analytic Hessian
they rest on (fit._hessian) and the Newton solvers (fit._newton).

What guards what:
- the analytic Hessian and its matrix-free products equal finite differences of the analytic
  gradient (every link / variance / position combination);
- calibration: on simulated agents with soft labels (label noise on the probit scale, the
  `simulated` scorer's model), 95 % sandwich intervals cover the planted normalised utilities and
  the planted β at the nominal rate over many seeds — not just "an interval exists";
- P(first chosen | tie) (β in noise units, fit.intervals.tie_shift): its gradient equals finite
  differences, it is invariant to the gauge (a joint rescaling of μ, t and β), its intervals
  cover the planted value, and both paths give the same standard error;
- the large-problem path (conjugate gradients, per-outcome blocks) agrees with the dense one;
- the truncated-Newton solver reaches the dense solver's optimum.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

import fit._newton as newton_mod
from fit._core import Block, build, value_grad
from fit._hessian import HessianOperator, dense_hessian
from fit.full import fit_with_intervals
from fit.intervals import tie_shift
from fit.stats import OrientedStats


def _noisy_agent(
    n: int, beta: float, noise: float, seed: int, rows: int = 1, pair_noise: float = 0.0
) -> OrientedStats:
    """Every pair in both orders; P(first) = Φ((μ_f − μ_s + β)/√2 ± pair_noise·δ + noise·ε).

    ε is fresh per row (label noise); δ is one draw per unordered pair, shared by both orders
    (an idiosyncratic preference about that pair), so the two orders of a pair are correlated.
    """
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(n)
    i, j = np.triu_indices(n, 1)
    delta = pair_noise * rng.standard_normal(len(i))
    f = np.repeat(np.concatenate([i, j]), rows)
    s = np.repeat(np.concatenate([j, i]), rows)
    shared = np.repeat(np.concatenate([delta, -delta]), rows)
    z = (mu[f] - mu[s] + beta) / np.sqrt(2.0) + shared
    p = ndtr(z + noise * rng.standard_normal(len(z)))
    return OrientedStats.from_rows(f, s, p, n), mu


@pytest.mark.parametrize(
    ("link", "hetero", "position"),
    [
        ("probit", True, True),
        ("probit", True, False),
        ("probit", False, True),
        ("logit", False, True),
    ],
)
def test_hessian_matches_finite_differences(rng, link, hetero, position):
    a = rng.integers(0, 7, 40)
    b = (a + 1 + rng.integers(0, 6, 40)) % 7
    blocks = [
        Block(a, b, rng.integers(1, 4, 40).astype(float), rng.random(40), 7),
        Block(np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0]), np.ones(4), rng.random(4), 4),
    ]
    pr = build(blocks, link, hetero, position, 1e-6, 0.2, 1.0 if hetero else 0.0)
    x = rng.normal(scale=0.7, size=pr.n_params)
    if hetero:
        n = pr.n_outcomes
        x[n : 2 * n] = np.sign(x[n : 2 * n]) * (0.3 + np.abs(x[n : 2 * n]))
    h = 1e-6
    numeric = np.array(
        [
            (value_grad(x + h * e, pr)[1] - value_grad(x - h * e, pr)[1]) / (2 * h)
            for e in np.eye(pr.n_params)
        ]
    )
    assert np.abs(dense_hessian(x, pr) - numeric).max() < 1e-6
    v = rng.normal(size=pr.n_params)
    assert np.allclose(HessianOperator(x, pr).matvec(v), numeric @ v, atol=1e-6)


def test_utility_and_beta_intervals_are_calibrated():
    """Over 20 seeds: ~95 % of utility intervals and ≥ 90 % of β intervals cover the truth,
    with label noise per row and a preference shared by both orders of each pair (which only
    intervals that treat the pair as the unit account for)."""
    covered_mu, total_mu, covered_beta, covered_tie = 0, 0, 0, 0
    seeds = range(20)
    for seed in seeds:
        oriented, mu = _noisy_agent(40, beta=0.4, noise=0.3, seed=seed, pair_noise=0.3)
        res = fit_with_intervals(oriented)
        truth = (mu - mu.mean()) / mu.std()
        covered_mu += int(np.sum((res.mu_lo <= truth) & (truth <= res.mu_hi)))
        total_mu += len(truth)
        true_beta = 0.4 / mu.std()
        assert res.position is not None
        covered_beta += int(res.position.beta_lo <= true_beta <= res.position.beta_hi)
        # the average answer at a tie: Φ(β/√2) flattened by both noises, √(1 + 0.3² + 0.3²)
        tie = ndtr(0.4 / np.sqrt(2.0) / np.sqrt(1 + 0.3**2 + 0.3**2))
        lo, hi = res.position.first_at_tie_interval
        covered_tie += int(lo <= tie <= hi)
    rate = covered_mu / total_mu
    assert 0.905 <= rate <= 0.985, rate
    assert covered_beta >= 18, covered_beta
    assert covered_tie >= 18, covered_tie


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_tie_shift_gradient_and_gauge(rng, link):
    hetero = link == "probit"
    blocks = [Block(np.array([0, 1, 2, 1]), np.array([1, 2, 0, 0]), np.ones(4), rng.random(4), 3)]
    pr = build(blocks, link, hetero, True, 1e-6, 0.0, 0.0)
    x = rng.normal(scale=0.7, size=pr.n_params)
    g, grad = tie_shift(x, pr)
    h = 1e-6
    numeric = np.array(
        [
            (tie_shift(x + h * e, pr)[0] - tie_shift(x - h * e, pr)[0]) / (2 * h)
            for e in np.eye(len(x))
        ]
    )
    assert np.allclose(grad, numeric, atol=1e-6)
    if hetero:  # μ, t and β scaled together describe the same agent (ε aside)
        pr0 = build(blocks, link, hetero, True, 0.0, 0.0, 0.0)
        assert tie_shift(3.0 * x, pr0)[0] == pytest.approx(tie_shift(x, pr0)[0], rel=1e-12)


def test_intervals_shrink_with_data_and_report_timings():
    small, _ = _noisy_agent(30, beta=0.0, noise=0.4, seed=1, rows=1)
    large, _ = _noisy_agent(30, beta=0.0, noise=0.4, seed=1, rows=9)
    a = fit_with_intervals(small, position_bias=False)
    b = fit_with_intervals(large, position_bias=False)
    ratio = np.nanmean(b.mu_se) / np.nanmean(a.mu_se)
    assert 0.25 < ratio < 0.45  # ≈ 1/3 for 9× the rows
    assert a.position is None and a.exact
    assert a.seconds_point > 0 and a.seconds_interval > 0


def test_hessian_interval_counts_rows_as_coin_flips():
    """With labels that are single Bernoulli draws, the Bernoulli Hessian and the sandwich agree."""
    rng = np.random.default_rng(3)
    n = 30
    mu = rng.standard_normal(n)
    i, j = np.triu_indices(n, 1)
    f = np.repeat(np.concatenate([i, j]), 6)
    s = np.repeat(np.concatenate([j, i]), 6)
    p = (rng.random(len(f)) < ndtr((mu[f] - mu[s] + 0.3) / np.sqrt(2))).astype(float)
    oriented = OrientedStats.from_rows(f, s, p, n)
    sand = fit_with_intervals(oriented, interval="sandwich")
    hess = fit_with_intervals(oriented, interval="hessian")
    assert np.nanmean(sand.mu_se) == pytest.approx(np.nanmean(hess.mu_se), rel=0.15)
    assert sand.position.beta_se == pytest.approx(hess.position.beta_se, rel=0.15)


def test_large_path_agrees_with_dense(monkeypatch):
    oriented, _ = _noisy_agent(60, beta=0.3, noise=0.4, seed=5, rows=2)
    dense = fit_with_intervals(oriented)
    monkeypatch.setattr(newton_mod, "DENSE_LIMIT", 10)
    monkeypatch.setattr("fit.intervals.DENSE_LIMIT", 10)
    large = fit_with_intervals(oriented)
    assert not large.exact
    assert np.allclose(large.fit.mu, dense.fit.mu, atol=1e-5)
    assert large.position.beta == pytest.approx(dense.position.beta, abs=1e-6)
    assert large.position.beta_se == pytest.approx(dense.position.beta_se, rel=1e-4)
    assert large.position.tie == pytest.approx(dense.position.tie, abs=1e-6)
    assert large.position.tie_se == pytest.approx(dense.position.tie_se, rel=1e-4)
    # per-outcome blocks ignore the neighbours' uncertainty: never wider, at most ~40 % narrower
    # (the extreme outcomes, whose informative comparisons are with few, uncertain neighbours)
    ratio = large.mu_se / dense.mu_se
    assert ratio.min() > 0.55 and ratio.max() <= 1.001
    assert np.median(ratio) > 0.8


def test_bradley_terry_and_homoscedastic_intervals_cover():
    covered, beta_covered = [], 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n = 40
        theta = rng.standard_normal(n)
        i, j = np.triu_indices(n, 1)
        f, s = np.concatenate([i, j]), np.concatenate([j, i])
        logit = theta[f] - theta[s] - 0.5 + 0.4 * rng.standard_normal(len(f))
        oriented = OrientedStats(f, s, np.ones(len(f)), 1 / (1 + np.exp(-logit)), n)
        bt = fit_with_intervals(oriented, estimator="bradley-terry")
        truth = (theta - theta.mean()) / theta.std()
        covered.append(np.mean((bt.mu_lo <= truth) & (truth <= bt.mu_hi)))
        lo, hi = bt.position.beta_lo * bt.fit.scale, bt.position.beta_hi * bt.fit.scale
        beta_covered += int(lo <= -0.5 <= hi)
    assert 0.88 <= np.mean(covered) <= 0.99
    assert beta_covered >= 6
    homo = fit_with_intervals(
        _noisy_agent(40, 0.0, 0.3, 2)[0], estimator="thurstonian-homoscedastic", position_bias=False
    )
    assert np.all(np.isfinite(homo.mu_se)) and np.all(homo.mu_se > 0)


def test_bad_arguments():
    oriented, _ = _noisy_agent(6, 0.0, 0.3, 0)
    with pytest.raises(ValueError, match="interval"):
        fit_with_intervals(oriented, interval="bootstrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        fit_with_intervals(oriented, level=1.0)
    with pytest.raises(ValueError, match="estimator"):
        fit_with_intervals(oriented, estimator="probit")  # type: ignore[arg-type]
