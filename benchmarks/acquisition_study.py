"""Active-learning study on the simulated scorer: which pairs to ask, and how many.

An agent with known utilities (the ``simulated`` scorer, heteroscedastic: σᵢ drawn log-normal,
plus label noise on the logit) is queried in rounds, both orders per pair, exactly as
``valuescope run`` does: a random 2-regular start graph, then ``--per-round`` new pairs per round
chosen by an acquisition function, refitting the Thurstonian model after each round, up to the
reference budget ⌊2·N·log₂N⌋ edges. A fixed held-out pair set (5 %, at most 1000) is never asked.

Acquisitions compared: ``reference`` (bottom-P % |Δμ| ∩ bottom-Q % degree), ``information``
(σ-aware, greedy A-optimal; the default of ``valuescope run``) and ``random`` (uniform unqueried
pairs, the control). The full graph (every non-held-out pair) is the ceiling; the true
utilities' own held-out accuracy is the noise ceiling.

Prints, per acquisition and number of queried pairs, held-out accuracy and Spearman to the true
utilities (mean over ``--seeds``), and saves a two-panel figure.

    .venv/bin/python benchmarks/acquisition_study.py [--outcomes 200] [--seeds 3]
        [--per-round 250] [--figure docs/figures/acquisition-study.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from elicit.config import ModeConfig, ModelConfig, PromptConfig
from elicit.prompts import PromptTemplate
from elicit.scorers.base import QueryBatch
from elicit.scorers.simulated import SimulatedScorer
from fit.acquisition import (
    budget,
    candidate_pairs,
    information_acquire,
    random_regular_start,
    reference_acquire,
)
from fit.metrics import accuracy, holdout_pairs, split_holdout
from fit.result import FitResult
from fit.stats import PairStats
from fit.thurstonian import fit_thurstonian

STRATEGIES = ("reference", "information", "random")


def make_agent(n: int, seed: int, label_noise: float) -> SimulatedScorer:
    texts = [f"outcome {i}" for i in range(n)]
    model = ModelConfig(
        name="sim", scorer="simulated", seed=seed, noise=1.0, label_noise=label_noise
    )
    agent = SimulatedScorer(model, ModeConfig(), PromptTemplate.from_config(PromptConfig()), texts)
    rng = np.random.default_rng([seed, 1])
    agent.sigma = 0.5 * np.exp(0.5 * rng.standard_normal(n))  # heteroscedastic
    return agent


def ask(agent: SimulatedScorer, pairs: np.ndarray, n: int, tag: int) -> PairStats:
    """Both orders of each pair (i < j), folded: P(i ≻ j) = (P_A(i,j) + 1 − P_A(j,i)) / 2."""
    i, j = pairs[:, 0], pairs[:, 1]
    m = len(pairs)
    batch = QueryBatch(
        pair_id=np.arange(2 * m) + tag, a_idx=np.concatenate([i, j]), b_idx=np.concatenate([j, i])
    )
    out = agent.score(batch)
    p = (out.p_a[:m] + 1.0 - out.p_a[m:]) / 2.0
    return PairStats(i, j, np.full(m, 2.0), p, n)


def concat(parts: list[PairStats], n: int) -> PairStats:
    return PairStats(
        np.concatenate([s.i for s in parts]),
        np.concatenate([s.j for s in parts]),
        np.concatenate([s.n for s in parts]),
        np.concatenate([s.p for s in parts]),
        n,
    )


def evaluate(
    result: FitResult, held: PairStats, truth: np.ndarray, observed: np.ndarray
) -> tuple[float, float]:
    rho = spearmanr(result.mu[observed], truth[observed]).statistic
    return accuracy(result, held), float(rho)


def acquire(
    strategy: str,
    result: FitResult,
    queried: np.ndarray,
    want: int,
    holdout: np.ndarray,
    seed: int,
) -> np.ndarray:
    if strategy == "reference":
        return reference_acquire(result.mu, queried, n_new=want, exclude=holdout, seed=seed)
    if strategy == "information":
        return information_acquire(result, queried, n_new=want, exclude=holdout, seed=seed)
    rng = np.random.default_rng(seed)
    free = candidate_pairs(result.n_outcomes, queried, holdout, rng)
    return free[rng.choice(len(free), size=min(want, len(free)), replace=False)]


def run_strategy(
    strategy: str, agent: SimulatedScorer, n: int, seed: int, per_round: int
) -> list[tuple[int, float, float]]:
    holdout = holdout_pairs(n, seed=seed)
    held = ask(agent, holdout, n, tag=10_000_000)
    truth = agent.utilities
    queried = random_regular_start(n, seed=seed, exclude=holdout)
    parts = [ask(agent, queried, n, tag=0)]
    limit = budget(n)
    curve = []
    result = None
    round_ = 0
    while True:
        stats = concat(parts, n)
        result = fit_thurstonian(stats, init=result, allow_unobserved=True, check_connected=False)
        curve.append((len(queried), *evaluate(result, held, truth, stats.observed())))
        if len(queried) >= limit:
            return curve
        round_ += 1
        want = min(per_round, limit - len(queried))
        new = acquire(strategy, result, queried, want, holdout, seed * 1000 + round_)
        if len(new) == 0:
            return curve
        parts.append(ask(agent, new, n, tag=round_ * 100_000))
        queried = np.concatenate([queried, new])


def ceilings(agent: SimulatedScorer, n: int, seed: int) -> tuple[int, float, float, float]:
    """Full graph fit (every non-held-out pair) and the true utilities' held-out accuracy."""
    holdout = holdout_pairs(n, seed=seed)
    i, j = np.triu_indices(n, 1)
    everything = ask(agent, np.stack([i, j], axis=1).astype(np.int64), n, tag=20_000_000)
    train, held = split_holdout(everything, holdout)
    result = fit_thurstonian(train)
    acc, rho = evaluate(result, held, agent.utilities, train.observed())
    true_acc = float(
        np.mean(
            (agent.utilities[held.i] > agent.utilities[held.j])[held.p != 0.5]
            == (held.p > 0.5)[held.p != 0.5]
        )
    )
    return train.n_pairs, acc, rho, true_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=250)
    parser.add_argument("--label-noise", type=float, default=0.5)
    parser.add_argument("--figure", default="docs/figures/acquisition-study.png")
    args = parser.parse_args()
    n = args.outcomes
    started = time.perf_counter()
    curves: dict[str, list[list[tuple[int, float, float]]]] = {s: [] for s in STRATEGIES}
    ceiling = []
    for seed in range(args.seeds):
        agent = make_agent(n, seed, args.label_noise)
        for strategy in STRATEGIES:
            curves[strategy].append(run_strategy(strategy, agent, n, seed, args.per_round))
        ceiling.append(ceilings(agent, n, seed))
    full_pairs = ceiling[0][0]
    full_acc = float(np.mean([c[1] for c in ceiling]))
    full_rho = float(np.mean([c[2] for c in ceiling]))
    true_acc = float(np.mean([c[3] for c in ceiling]))
    print(
        f"simulated agent: N={n} outcomes, heteroscedastic σ, label noise {args.label_noise}; "
        f"budget {budget(n)} pairs (both orders each), {args.per_round} per round; "
        f"mean of {args.seeds} seeds; {time.perf_counter() - started:.1f} s"
    )
    print(f"{'acquisition':>12} {'pairs':>6} {'held-out acc':>12} {'Spearman':>9}")
    mean_curves = {}
    for strategy in STRATEGIES:
        arr = np.array(curves[strategy])  # (seeds, rounds, 3)
        mean = arr.mean(axis=0)
        mean_curves[strategy] = mean
        for pairs, acc, rho in mean:
            print(f"{strategy:>12} {int(pairs):>6} {acc:>12.4f} {rho:>9.4f}")
    print(f"{'full graph':>12} {full_pairs:>6} {full_acc:>12.4f} {full_rho:>9.4f}")
    print(f"{'true μ':>12} {'':>6} {true_acc:>12.4f} {1.0:>9.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    # right panel: 1 − Spearman on a log scale, where the acquisitions actually differ
    for strategy, mean in mean_curves.items():
        axes[0].plot(mean[:, 0], mean[:, 1], marker="o", ms=3, label=strategy)
        axes[1].plot(mean[:, 0], 1.0 - mean[:, 2], marker="o", ms=3, label=strategy)
    axes[0].axhline(full_acc, ls="--", c="grey", label=f"full graph ({full_pairs} pairs)")
    axes[0].axhline(true_acc, ls=":", c="green", label="true utilities")
    axes[1].axhline(1.0 - full_rho, ls="--", c="grey", label=f"full graph ({full_pairs} pairs)")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("held-out accuracy")
    axes[1].set_ylabel("1 − Spearman(μ̂, true utilities)")
    for ax in axes:
        ax.set_xlabel("pairs queried (both orders each)")
        ax.axvline(budget(n), ls=":", c="k", lw=0.8)
        ax.legend(fontsize=8)
    fig.suptitle(f"Acquisition on the simulated scorer, N={n}, mean of {args.seeds} seeds")
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
