"""Simulators with known parameters for the fit tests (the only stand-in: a synthetic agent)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import expit, ndtr

from fit.stats import OrientedStats, PairStats


@dataclass(frozen=True)
class Agent:
    """A synthetic chooser: Thurstonian (sigma2 given) or Bradley–Terry (sigma2 None)."""

    mu: np.ndarray
    sigma2: np.ndarray | None
    beta: float = 0.0

    @property
    def n(self) -> int:
        return len(self.mu)

    def prob_first(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        d = self.mu[first] - self.mu[second] + self.beta
        if self.sigma2 is None:
            return expit(d)
        return ndtr(d / np.sqrt(self.sigma2[first] + self.sigma2[second]))

    def oriented(self, pairs: np.ndarray, k: int, rng: np.random.Generator) -> OrientedStats:
        """Both orders of every pair, k Bernoulli draws per order (label = share of wins)."""
        f = np.concatenate([pairs[:, 0], pairs[:, 1]])
        s = np.concatenate([pairs[:, 1], pairs[:, 0]])
        p = rng.binomial(k, self.prob_first(f, s)) / k
        return OrientedStats(f, s, np.full(len(f), float(k)), p, self.n)

    def pairs(self, pairs: np.ndarray, k: int, rng: np.random.Generator) -> PairStats:
        """Unordered pairs (i < j), k Bernoulli draws each, no position bias."""
        i, j = pairs[:, 0], pairs[:, 1]
        d = self.mu[i] - self.mu[j]
        q = expit(d) if self.sigma2 is None else ndtr(d / np.sqrt(self.sigma2[i] + self.sigma2[j]))
        return PairStats(i, j, np.full(len(i), float(k)), rng.binomial(k, q) / k, self.n)


def _all_pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, 1)
    return np.stack([i, j], axis=1).astype(np.int64)


@pytest.fixture
def all_pairs():
    """Function n → every unordered pair (i < j) as an (m, 2) array."""
    return _all_pairs


@pytest.fixture
def make_agent():
    """The Agent class: Agent(mu, sigma2 or None for Bradley–Terry, beta=0)."""
    return Agent


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def thurstone_agent(rng: np.random.Generator) -> Agent:
    n = 120
    return Agent(rng.normal(size=n), np.exp(rng.normal(scale=0.4, size=n)))


@pytest.fixture
def small_stats(rng: np.random.Generator) -> PairStats:
    """A small random problem for gradient checks: 12 outcomes, 40 random pairs."""
    n = 12
    pairs = _all_pairs(n)
    pairs = pairs[rng.choice(len(pairs), 40, replace=False)]
    return PairStats(pairs[:, 0], pairs[:, 1], rng.integers(1, 5, 40), rng.random(40), n)


@pytest.fixture
def torch_cpu():
    """torch, limited to one CPU thread for the test (2-core machines: threads fight)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)
