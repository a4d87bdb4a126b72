"""Benchmark: DuckDB aggregation + Thurstonian fit at scale.

For each ROWS:OUTCOMES size, synthetic comparison rows are generated inside DuckDB (``range()``
with hash-based random pairs, a hidden Thurstonian agent with a small first-position bias, soft
labels with noise, 1 % failed rows) and written to one Parquet file; then the per-pair aggregate
(:func:`fit.data.pair_stats`, the production SQL) is timed over that file, and the fit on the
aggregate is timed separately.

    python benchmarks/fit_scale.py --sizes 1M:510,10M:510,10M:100000
    python benchmarks/fit_scale.py --sizes 100M:510 --threads 2
    python benchmarks/fit_scale.py --sizes 1M:10000 --compare-lbfgs   # old solver, same process

Prints one table row per size: generation time and file size, aggregation time and rows/s,
number of pairs, fit time (Newton on the analytic Hessian: dense up to a few thousand outcomes,
truncated Newton with block-Jacobi preconditioned conjugate gradients above), Newton steps,
aggregate + fit, the peak resident memory of the process so far (generation runs in a child
process, so this is what aggregation and fitting needed; sizes run in the order given), and the
rank correlation of the fitted utilities with the hidden ones.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

# scipy's L-BFGS-B makes many tiny BLAS calls; threaded OpenBLAS only adds wake-up latency.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
from scipy.stats import spearmanr

from fit.data import pair_stats
from fit.thurstonian import fit_thurstonian

# Hidden agent, as SQL over an outcome index k: μ uniform with sd 1, σ² in [0.5, 1.5).
MU = "((hash({k} * 2654435761 + 11) % 1000003) / 1000003.0 - 0.5) * 3.4641016"
SIGMA2 = "(0.5 + (hash({k} + 7919) % 1000) / 1000.0)"

GENERATE = """
COPY (
  WITH r AS (
    SELECT i,
           (hash(i) % $n)::BIGINT AS a,
           ((hash(i) % $n + 1 + hash(i + 40503) % ($n - 1)) % $n)::BIGINT AS b,
           (hash(i + 7777777) % 1000003) / 1000003.0 AS u
    FROM range($rows) t(i)
  ), z AS (
    SELECT i, a, b, u,
           ({mu_a} - {mu_b} + 0.1) / sqrt({s_a} + {s_b}) AS z
    FROM r
  )
  SELECT 'bench' AS run_id, 'sim' AS model, 0::INTEGER AS round, (i // 100000)::INTEGER AS shard,
         (least(a, b) * $n + greatest(a, b))::BIGINT AS pair_id,
         'o' || lpad(a::VARCHAR, 6, '0') AS outcome_a,
         'o' || lpad(b::VARCHAR, 6, '0') AS outcome_b,
         (a > b)::TINYINT AS orientation,
         CASE WHEN u < 0.01 THEN NULL
              ELSE 1.0 / (1.0 + exp(-1.702 * z + (u - 0.5))) END AS p_a,
         CASE WHEN u < 0.01 THEN 'timeout' ELSE NULL END AS error
  FROM z
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
"""


def parse_size(text: str) -> tuple[int, int]:
    rows, outcomes = text.split(":")
    mult = {"K": 10**3, "M": 10**6, "B": 10**9}
    r = int(float(rows[:-1]) * mult[rows[-1].upper()]) if rows[-1].isalpha() else int(rows)
    return r, int(outcomes)


def human(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def generate(rows: int, n: int, path: Path, threads: int) -> None:
    """Write the synthetic rows (runs in a child process, see the module docstring)."""
    con = duckdb.connect(config={"threads": threads})
    con.execute("SET enable_progress_bar = false")
    sql = GENERATE.format(
        mu_a=MU.format(k="a"),
        mu_b=MU.format(k="b"),
        s_a=SIGMA2.format(k="a"),
        s_b=SIGMA2.format(k="b"),
        path=path,
    )
    con.execute(sql, {"n": n, "rows": rows})
    con.close()


def lbfgs_fit(stats: object, max_iter: int) -> tuple[float, int]:
    """The previous solver (scipy L-BFGS-B) on the same objective: (seconds, iterations)."""
    from fit._core import lbfgs
    from fit._engine import fit_blocks

    t0 = time.perf_counter()
    _, _, _, sol = fit_blocks(
        [stats],  # type: ignore[list-item]
        link="probit",
        hetero=True,
        position=False,
        estimator="thurstonian",
        eps=1e-6,
        l2=0.0,
        var_prior=1.0,
        max_iter=max_iter,
        gtol=1e-6,
        ftol=1e-13,
        allow_unobserved=True,
        check_connected=True,
        init=None,
        solver=lbfgs,
    )
    return time.perf_counter() - t0, sol.iterations


def run(
    rows: int, n: int, workdir: Path, threads: int, max_iter: int, compare: bool, keep: bool
) -> dict[str, object]:
    path = workdir / f"comparisons-{rows}-{n}.parquet"
    t0 = time.perf_counter()
    if not (keep and path.exists()):
        child = multiprocessing.get_context("spawn").Process(
            target=generate, args=(rows, n, path, threads)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generating {rows} rows over {n} outcomes failed ({child.exitcode})")
    gen_s = time.perf_counter() - t0  # ~0 when an existing file was reused
    con = duckdb.connect(config={"threads": threads})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE VIEW comparisons AS SELECT * FROM read_parquet('{path}')")
    ids = [f"o{k:06d}" for k in range(n)]

    t0 = time.perf_counter()
    stats = pair_stats(con, ids, run_id="bench", model="sim")
    agg_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = fit_thurstonian(stats, max_iter=max_iter, allow_unobserved=True)
    fit_s = time.perf_counter() - t0

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lbfgs_s, lbfgs_it = lbfgs_fit(stats, max_iter) if compare else (float("nan"), 0)
    truth_sql = f"SELECT {MU.format(k='k')} AS mu FROM range($n) t(k) ORDER BY k"
    truth = con.execute(truth_sql, {"n": n}).fetchnumpy()["mu"]
    rho = spearmanr(result.mu, truth).statistic
    size_mb = path.stat().st_size / 2**20
    con.close()
    if not keep:
        path.unlink()
    return {
        "rows": human(rows),
        "outcomes": n,
        "gen_s": gen_s,
        "parquet_MB": size_mb,
        "agg_s": agg_s,
        "agg_Mrows/s": rows / agg_s / 1e6,
        "pairs": stats.n_pairs,
        "fit_s": fit_s,
        "iters": result.iterations,
        "conv": result.converged,
        "agg+fit_s": agg_s + fit_s,
        "peak_MB": peak_mb,
        "spearman": rho,
        "lbfgs_s": lbfgs_s,
        "lbfgs_it": lbfgs_it,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="1M:510,10M:510,10M:100000",
        help="comma-separated ROWS:OUTCOMES, ROWS may use K/M/B suffixes",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="DuckDB threads")
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--workdir", default=None, help="where to write the Parquet files")
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the Parquet files in --workdir and reuse them on the next run",
    )
    parser.add_argument(
        "--compare-lbfgs", action="store_true", help="also time the previous L-BFGS solver"
    )
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vs-fit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cols = [
        "rows",
        "outcomes",
        "gen_s",
        "parquet_MB",
        "agg_s",
        "agg_Mrows/s",
        "pairs",
        "fit_s",
        "iters",
        "conv",
        "agg+fit_s",
        "peak_MB",
        "spearman",
    ] + (["lbfgs_s", "lbfgs_it"] if args.compare_lbfgs else [])
    print(f"cores={os.cpu_count()} duckdb_threads={args.threads} numpy={np.__version__}")
    print(" | ".join(f"{c:>11}" for c in cols), flush=True)
    try:
        for size in args.sizes.split(","):
            rows, n = parse_size(size.strip())
            row = run(
                rows, n, workdir, args.threads, args.max_iter, args.compare_lbfgs, args.keep_files
            )
            cells = [
                f"{row[c]:>11.3f}" if isinstance(row[c], float) else f"{row[c]!s:>11}" for c in cols
            ]
            print(" | ".join(cells), flush=True)
    finally:
        if args.workdir is None and not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
