"""Coverage of the analyses' 95 % intervals on planted agents (docs/analyses.md, "Intervals").

Each check plants a population whose answer is known, draws the sample an analysis would see
(outcomes, lotteries, questions), computes the interval the analysis stores, and counts how
often it contains the population value. The agent is the simulated one's model: outcome i has
utility μᵢ and noise σ, P(i ≻ j) = Φ((μᵢ − μⱼ) / √(2σ²)).

    .venv/bin/python benchmarks/interval_coverage.py --reps 400

prints one line per interval method: coverage, and the Monte-Carlo standard error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from scipy.special import ndtr

from fit.analyses.expected_utility import compare
from fit.analyses.expected_utility import intervals as eu_intervals
from fit.analyses.intervals import (
    fisher,
    outcome_weights,
    pair_members,
    weighted_mean_interval,
    wilson,
)
from fit.analyses.transitivity import cycle_probability, sample_triads

POPULATION = 300
"""Outcomes in the planted population the samples are drawn from."""


def _population(seed: int, noise: float = 0.8) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    mu = np.random.default_rng(seed).standard_normal(POPULATION)
    return lambda i, j: ndtr((mu[i] - mu[j]) / np.sqrt(2 * noise**2))


def transitivity(reps: int, n: int, seed: int = 0) -> float:
    """Mean cycle probability over all triads of ``n`` sampled outcomes (outcome bootstrap)."""
    p = _population(seed)
    big = sample_triads(POPULATION, 100_000, seed)
    truth = cycle_probability(
        p(big[:, 0], big[:, 1]), p(big[:, 1], big[:, 2]), p(big[:, 2], big[:, 0])
    ).mean()
    rng = np.random.default_rng(seed + 1)
    hits = 0
    for r in range(reps):  # one replicate study per loop; each is vectorised inside
        g = rng.choice(POPULATION, n, replace=False)[t := sample_triads(n, 2000, r)]
        cp = cycle_probability(p(g[:, 0], g[:, 1]), p(g[:, 1], g[:, 2]), p(g[:, 2], g[:, 0]))
        lo, hi = weighted_mean_interval(cp, outcome_weights(t, n, seed=r))
        hits += lo <= truth <= hi
    return hits / reps


def decisiveness(reps: int, n: int, seed: int = 0) -> float:
    """Mean |2P − 1| over the full graph of ``n`` sampled outcomes (outcome bootstrap)."""
    p = _population(seed)
    i, j = np.triu_indices(POPULATION, k=1)
    truth = np.abs(2 * p(i, j) - 1).mean()
    rng = np.random.default_rng(seed + 2)
    a, b = np.triu_indices(n, k=1)
    members, _ = pair_members([str(x).zfill(3) for x in a], [str(x).zfill(3) for x in b])
    hits = 0
    for r in range(reps):
        g = rng.choice(POPULATION, n, replace=False)
        d = np.abs(2 * p(g[a], g[b]) - 1)
        lo, hi = weighted_mean_interval(d, outcome_weights(members, n, seed=r))
        hits += lo <= truth <= hi
    return hits / reps


def correlation(reps: int, n: int, seed: int = 0, *, rank: bool = False) -> float:
    """Correlation of two noisy readings of the same utilities over ``n`` outcomes (Fisher z),
    against the population correlation (power, corrigibility, convergence-style statistics)."""
    rng = np.random.default_rng(seed + 3)
    rho = 0.6
    big = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=200_000)
    if rank:
        from fit.analyses._common import spearman

        truth = spearman(big[:, 0], big[:, 1])
    else:
        truth = rho
    from fit.analyses._common import pearson, spearman

    hits = 0
    for _ in range(reps):
        x = big[rng.choice(len(big), n, replace=False)]
        r = spearman(x[:, 0], x[:, 1]) if rank else pearson(x[:, 0], x[:, 1])
        lo, hi = fisher(r, n, rank=rank)
        hits += lo <= truth <= hi
    return hits / reps


def share(reps: int, n: int, seed: int = 0) -> float:
    """A top-1 rate over ``n`` questions with success probability 0.4 (Wilson)."""
    rng = np.random.default_rng(seed + 4)
    k = rng.binomial(n, 0.4, size=reps)
    bounds = np.array([wilson(float(x), n) for x in k])
    return float(np.mean((bounds[:, 0] <= 0.4) & (bounds[:, 1] >= 0.4)))


def lotteries(reps: int, n: int, seed: int = 0) -> float:
    """Violation rate of ``n`` lotteries whose fitted utility is EU plus noise (bootstrap over
    lotteries), against the population rate."""
    rng = np.random.default_rng(seed + 5)
    noise = 0.5

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        exp = rng.standard_normal(m)
        return exp + noise * rng.standard_normal(m), exp

    obs, exp = draw(4000)
    truth = compare(obs, exp).violation_rate
    hits = 0
    for r in range(reps):
        o, e = draw(n)
        lo, hi = eu_intervals(compare(o, e), seed=r)["violation_rate"]
        hits += lo <= truth <= hi
    return hits / reps


CHECKS: dict[str, Callable[[int], float]] = {
    "transitivity, 12 outcomes (outcome bootstrap)": lambda r: transitivity(r, 12),
    "transitivity, 20 outcomes (outcome bootstrap)": lambda r: transitivity(r, 20),
    "decisiveness, 12 outcomes (outcome bootstrap)": lambda r: decisiveness(r, 12),
    "Pearson r, 12 outcomes (Fisher z)": lambda r: correlation(r, 12),
    "Spearman rho, 12 outcomes (Fisher z, Bonett-Wright)": lambda r: correlation(r, 12, rank=True),
    "top-1 rate, 15 questions (Wilson)": lambda r: share(r, 15),
    "violation rate, 10 lotteries (lottery bootstrap)": lambda r: lotteries(r, 10),
    "violation rate, 100 lotteries (lottery bootstrap)": lambda r: lotteries(r, 100),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400, help="planted studies per check")
    args = parser.parse_args()
    for name, check in CHECKS.items():
        c = check(args.reps)
        se = np.sqrt(c * (1 - c) / args.reps)
        print(f"{name:55s} coverage {c:.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
