"""Benchmark: the whole valuescope fit (utilities, intervals, position bias) vs full-batch Adam.

Data: a simulated agent with known utilities — Thurstonian, μ ~ N(0, 1) seeded, σ = 1 for every
outcome, a first-position shift β and label noise on the probit scale, as the `simulated`
scorer's logprob mode: P(first) = Φ((μ_f − μ_s + β)/√2 + label_noise·ε) per row. Default
design: every pair of 510 outcomes in both orders, one row each (259,590 rows, the full graph);
``--design random --rows R`` draws R random ordered pairs instead.

Arms, on the same rows in one process:

- valuescope, the whole ``fit``: DuckDB GROUP BY to ordered-pair statistics
  (:func:`fit.data.oriented_stats`), :func:`fit.full.fit_with_intervals` (Newton on the analytic
  Hessian: utilities and β jointly, then sandwich intervals for every utility and for β), and
  the metrics a run stores (accuracy, log-loss, order consistency). Point-fit and interval
  seconds are printed separately.
- Adam on the raw rows: torch on CPU, lr 0.01, 1000 full-batch epochs, binary cross-entropy of
  the heteroscedastic Thurstonian model over every row, μ z-normalised after every step and
  σ² rescaled by the same factor.
- Adam on order-averaged pairs — the paper's procedure: one soft label per unordered pair (the
  mean of P(i ≻ j) over both orders), the same loop over the pairs.

Prints times and speed-ups, each arm's log-loss on the raw rows and on the order-averaged pairs
(μ only, as the paper scores it), and Spearman correlations with the true utilities.

    python benchmarks/fit_vs_adam.py                          # full graph, 510 outcomes
    python benchmarks/fit_vs_adam.py --design random --rows 1000000
    python benchmarks/fit_vs_adam.py --epochs 200             # shorter Adam
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# scipy's solvers make many small BLAS/LAPACK calls; threaded OpenBLAS only adds wake-up latency
# on a shared machine. (torch uses its own thread pool and is unaffected.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
import pyarrow as pa
from scipy.special import log_ndtr, ndtr
from scipy.stats import spearmanr

from fit.data import oriented_stats
from fit.full import fit_with_intervals
from fit.metrics import accuracy, log_loss, order_consistency
from fit.result import predict_logit_or_z
from fit.stats import fold

EPS = 1e-6


def make_rows(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(args.seed)
    n = args.outcomes
    mu = rng.standard_normal(n)
    if args.design == "full":
        i, j = np.triu_indices(n, 1)
        a = np.repeat(np.concatenate([i, j]), args.reps)
        b = np.repeat(np.concatenate([j, i]), args.reps)
    else:
        a = rng.integers(0, n, args.rows)
        b = (a + 1 + rng.integers(0, n - 1, args.rows)) % n
    z = (mu[a] - mu[b] + args.beta) / np.sqrt(2.0)
    p = ndtr(z + args.label_noise * rng.standard_normal(len(a)))
    return a, b, p, mu


def bce(z: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(-(p * log_ndtr(z) + (1 - p) * log_ndtr(-z))))


def fit_adam(a, b, p, n: int, epochs: int, lr: float, seed: int):
    """Full-batch Adam on the terms (a, b, p), μ z-normalised after every step."""
    import torch

    torch.manual_seed(seed)
    A, B, P = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(p)
    mu = (0.01 * torch.randn(n, dtype=torch.float64)).requires_grad_()
    log_s2 = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([mu, log_s2], lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        s2 = torch.exp(log_s2)
        q = torch.special.ndtr((mu[A] - mu[B]) / torch.sqrt(s2[A] + s2[B] + EPS))
        loss = torch.nn.functional.binary_cross_entropy(q.clamp(1e-12, 1 - 1e-12), P)
        loss.backward()
        opt.step()
        with torch.no_grad():
            sd = mu.std()
            mu.sub_(mu.mean()).div_(sd)
            log_s2.sub_(2 * torch.log(sd))
    return mu.detach().numpy(), torch.exp(log_s2).detach().numpy()


def whole_fit(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, object]:
    """What a run's fit stage computes for one model, timed as a whole."""
    t0 = time.perf_counter()
    oriented = oriented_stats(con, ids, run_id="bench", model="sim")
    t_agg = time.perf_counter() - t0
    res = fit_with_intervals(oriented)
    pairs = fold(oriented)
    metrics = (accuracy(res.fit, pairs), log_loss(res.fit, pairs), order_consistency(oriented))
    total = time.perf_counter() - t0
    return {"oriented": oriented, "res": res, "agg": t_agg, "total": total, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", choices=["full", "random"], default="full")
    parser.add_argument("--outcomes", type=int, default=510)
    parser.add_argument("--reps", type=int, default=1, help="full design: rows per orientation")
    parser.add_argument("--rows", type=int, default=1_000_000, help="random design: rows")
    parser.add_argument("--beta", type=float, default=0.2, help="first-position shift")
    parser.add_argument("--label-noise", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.outcomes

    a, b, p, truth = make_rows(args)
    ids = [f"o{k:05d}" for k in range(n)]
    names = np.array(ids, dtype=object)
    table = pa.table(
        {
            "run_id": pa.array(["bench"] * len(a)),
            "model": pa.array(["sim"] * len(a)),
            "round": pa.array(np.ones(len(a), dtype=np.int32)),
            "outcome_a": pa.array(names[a]),
            "outcome_b": pa.array(names[b]),
            "p_a": pa.array(p),
            "error": pa.nulls(len(a), pa.string()),
        }
    )
    con = duckdb.connect()
    con.register("comparisons", table)

    ours = whole_fit(con, ids)
    res = ours["res"]
    pairs = fold(ours["oriented"])

    t0 = time.perf_counter()
    mu_raw, s2_raw = fit_adam(a, b, p, n, args.epochs, args.lr, args.seed)
    adam_raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_pair, s2_pair = fit_adam(pairs.i, pairs.j, pairs.p, n, args.epochs, args.lr, args.seed)
    adam_pair_s = time.perf_counter() - t0

    def adam_z(mu: np.ndarray, s2: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (mu[x] - mu[y]) / np.sqrt(s2[x] + s2[y] + EPS)

    pos = res.position
    assert pos is not None
    ours_rows = bce(predict_logit_or_z(res.fit, a, b, offset=pos.beta), p)
    rows = [
        ("valuescope (mu, sigma2, beta)", ours_rows, res.fit.mu),
        ("adam on raw rows", bce(adam_z(mu_raw, s2_raw, a, b), p), mu_raw),
        ("adam on order-averaged pairs", bce(adam_z(mu_pair, s2_pair, a, b), p), mu_pair),
    ]
    pair_loss = [
        bce(predict_logit_or_z(res.fit, pairs.i, pairs.j), pairs.p),
        bce(adam_z(mu_raw, s2_raw, pairs.i, pairs.j), pairs.p),
        bce(adam_z(mu_pair, s2_pair, pairs.i, pairs.j), pairs.p),
    ]
    floor = float(np.mean(-(p * np.log(p) + (1 - p) * np.log1p(-p))))
    total = float(ours["total"])  # type: ignore[arg-type]
    import torch

    print(
        f"design={args.design} rows={len(a):,} outcomes={n} pairs={pairs.n_pairs:,} "
        f"beta={args.beta} label_noise={args.label_noise} torch_threads={torch.get_num_threads()}"
    )
    print(
        f"valuescope whole fit: {total:.3f} s = aggregate {ours['agg']:.3f} s + point fit "
        f"{res.seconds_point:.3f} s ({res.fit.iterations} Newton steps) + intervals "
        f"{res.seconds_interval:.3f} s + metrics"
    )
    print(f"adam, raw rows ({args.epochs} epochs, lr {args.lr}):   {adam_raw_s:.3f} s")
    print(f"adam, order-averaged pairs (the paper's):  {adam_pair_s:.3f} s")
    print(
        f"speed-up of the whole fit: {adam_raw_s / total:.1f}x vs adam on rows, "
        f"{adam_pair_s / total:.1f}x vs adam on pairs"
    )
    print(f"log-loss (label entropy floor on rows {floor:.5f}):")
    print(f"  {'arm':32s} {'raw rows':>10s} {'pairs':>10s} {'spearman':>9s}")
    for (name, row_loss, mu), pl in zip(rows, pair_loss, strict=True):
        rho = spearmanr(mu, truth).statistic
        print(f"  {name:32s} {row_loss:10.5f} {pl:10.5f} {rho:9.5f}")
    true_beta = args.beta / truth.std()
    truth_n = (truth - truth.mean()) / truth.std()
    cover = np.mean((res.mu_lo <= truth_n) & (truth_n <= res.mu_hi))
    print(
        f"beta {pos.beta:+.4f} [{pos.beta_lo:+.4f}, {pos.beta_hi:+.4f}] (truth {true_beta:+.4f}); "
        f"utility intervals cover the truth for {cover:.1%} of outcomes (level {res.level:.0%})"
    )


if __name__ == "__main__":
    main()
