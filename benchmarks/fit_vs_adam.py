"""Benchmark: valuescope's aggregated L-BFGS fit vs the usual full-batch Adam fit.

Both fit the heteroscedastic Thurstonian model P(a ≻ b) = Φ((μ_a − μ_b)/√(σ_a² + σ_b² + ε)) to
the same synthetic rows (default 1M rows over 510 outcomes, soft labels from a hidden agent with
noise), in one process:

- valuescope: DuckDB GROUP BY to per-pair statistics (:func:`fit.data.pair_stats`), then
  :func:`fit.thurstonian.fit_thurstonian` (analytic gradient, scipy L-BFGS-B).
- the usual way: torch on CPU, Adam with lr 0.01 for 1000 full-batch epochs over the
  unaggregated rows, binary cross-entropy, μ z-normalised after every step and log σ² shifted
  by the same factor (σ² rescaled), as in the reference procedure.

Prints wall times, their ratio, and the final log-loss of each fit on the same unaggregated rows
(mean binary cross-entropy against the soft labels), plus rank correlations.

    python benchmarks/fit_vs_adam.py                      # 1M rows, 510 outcomes, 1000 epochs
    python benchmarks/fit_vs_adam.py --rows 100000 --epochs 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# scipy's L-BFGS-B makes many tiny BLAS calls; threaded OpenBLAS only adds wake-up latency.
# (torch uses its own thread pool and is unaffected.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
import pyarrow as pa
from scipy.special import log_ndtr, ndtr
from scipy.stats import spearmanr

from fit.data import pair_stats
from fit.result import predict_logit_or_z
from fit.thurstonian import fit_thurstonian

EPS = 1e-6


def make_rows(rows: int, n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    sigma2 = np.exp(rng.normal(scale=0.4, size=n))
    a = rng.integers(0, n, rows)
    b = (a + 1 + rng.integers(0, n - 1, rows)) % n
    z = (mu[a] - mu[b]) / np.sqrt(sigma2[a] + sigma2[b])
    p = ndtr(z + 0.3 * rng.standard_normal(rows))  # logprob-like soft labels with noise
    return a, b, p, mu


def row_log_loss(z: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(-(p * log_ndtr(z) + (1 - p) * log_ndtr(-z))))


def fit_adam(
    a: np.ndarray, b: np.ndarray, p: np.ndarray, n: int, epochs: int, lr: float, seed: int
):
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
    return mu.detach().numpy(), torch.exp(log_s2).detach().numpy(), torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--outcomes", type=int, default=510)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.outcomes

    a, b, p, truth = make_rows(args.rows, n, args.seed)
    ids = np.array([f"o{k:05d}" for k in range(n)], dtype=object)
    table = pa.table(
        {
            "run_id": pa.array(["bench"] * args.rows),
            "model": pa.array(["sim"] * args.rows),
            "round": pa.array(np.zeros(args.rows, dtype=np.int32)),
            "outcome_a": pa.array(ids[a]),
            "outcome_b": pa.array(ids[b]),
            "p_a": pa.array(p),
            "error": pa.nulls(args.rows, pa.string()),
        }
    )
    con = duckdb.connect()
    con.register("comparisons", table)

    t0 = time.perf_counter()
    stats = pair_stats(con, list(ids), run_id="bench", model="sim")
    agg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = fit_thurstonian(stats)
    fit_s = time.perf_counter() - t0
    mle = fit_thurstonian(stats, var_prior=0.0, init=ours)
    ours_s = agg_s + fit_s

    t0 = time.perf_counter()
    mu_adam, s2_adam, threads = fit_adam(a, b, p, n, args.epochs, args.lr, args.seed)
    adam_s = time.perf_counter() - t0

    z_adam = (mu_adam[a] - mu_adam[b]) / np.sqrt(s2_adam[a] + s2_adam[b] + EPS)
    ll_adam = row_log_loss(z_adam, p)
    ll_ours = row_log_loss(predict_logit_or_z(ours, a, b), p)
    ll_mle = row_log_loss(predict_logit_or_z(mle, a, b), p)
    floor = float(np.mean(-(p * np.log(p) + (1 - p) * np.log1p(-p))))

    print(f"rows={args.rows:,} outcomes={n} pairs={stats.n_pairs:,} torch_threads={threads}")
    print(
        f"valuescope: aggregate {agg_s:.3f} s + L-BFGS fit {fit_s:.3f} s "
        f"({ours.iterations} iterations) = {ours_s:.3f} s"
    )
    print(
        f"adam:       {args.epochs} full-batch epochs over the rows, lr {args.lr}: {adam_s:.3f} s"
    )
    print(f"speed-up:   {adam_s / ours_s:.1f}x (adam time / valuescope time)")
    print(
        "log-loss on the unaggregated rows (mean BCE vs soft labels; label entropy "
        f"floor {floor:.5f}):"
    )
    print(f"  valuescope (var_prior=1, default) {ll_ours:.5f}")
    print(f"  valuescope (var_prior=0, pure MLE) {ll_mle:.5f}")
    print(f"  adam                               {ll_adam:.5f}")
    print(
        f"spearman(mu): valuescope vs truth {spearmanr(ours.mu, truth).statistic:.4f}, "
        f"adam vs truth {spearmanr(mu_adam, truth).statistic:.4f}, "
        f"valuescope vs adam {spearmanr(ours.mu, mu_adam).statistic:.4f}"
    )


if __name__ == "__main__":
    main()
