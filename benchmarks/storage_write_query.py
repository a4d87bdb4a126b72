"""Benchmark: write comparison rows as Parquet parts through the atomic writer, then run the
per-pair aggregate (GROUP BY unordered pair: count, sum of P) in DuckDB.

    python benchmarks/storage_write_query.py --rows 10000000 --part-rows 100000

Prints rows/s written and the query time. Rows are synthetic (510 outcomes, random pairs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time

import duckdb
import numpy as np

from storage import Root, RunLayout
from storage.schemas import to_table
from storage.writer import write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--part-rows", type=int, default=100_000)
    parser.add_argument("--outcomes", type=int, default=510)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="vs-bench-")
    root = Root(workdir)
    layout = RunLayout(root, "bench")
    ids = np.array([f"o{i:05d}" for i in range(args.outcomes)], dtype=object)
    rng = np.random.default_rng(0)
    now = dt.datetime.now(dt.UTC)
    build_s = write_s = 0.0
    n_parts = (args.rows + args.part_rows - 1) // args.part_rows
    for shard in range(n_parts):
        n = min(args.part_rows, args.rows - shard * args.part_rows)
        t0 = time.perf_counter()
        a = rng.integers(0, args.outcomes, n)
        b = (a + rng.integers(1, args.outcomes, n)) % args.outcomes
        p = rng.random(n)
        table = to_table(
            "comparisons",
            {
                "run_id": "bench",
                "model": "sim",
                "round": 0,
                "shard": shard,
                "pair_id": np.minimum(a, b) * args.outcomes + np.maximum(a, b),
                "outcome_a": ids[a],
                "outcome_b": ids[b],
                "orientation": (a > b).astype(np.int8),
                "template_id": "default",
                "mode": "logprob",
                "p_a": p,
                "p_b": 1 - p,
                "mass": np.ones(n),
                "latency_ms": np.zeros(n, dtype=np.float32),
                "created_at": now,
            },
            num_rows=n,
        )
        t1 = time.perf_counter()
        write_table(root, layout.part("sim", 0, shard), "comparisons", table)
        t2 = time.perf_counter()
        build_s += t1 - t0
        write_s += t2 - t1
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(workdir) for f in fs)

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    glob = os.path.join(workdir, "comparisons", "*", "*", "*", "*.parquet")
    sql = f"""
        SELECT least(outcome_a, outcome_b) AS lo, greatest(outcome_a, outcome_b) AS hi,
               count(*) AS n,
               sum(CASE WHEN outcome_a < outcome_b THEN p_a ELSE 1 - p_a END) AS sum_p_lo
        FROM read_parquet('{glob}')
        WHERE error IS NULL AND p_a IS NOT NULL
        GROUP BY ALL
    """
    t0 = time.perf_counter()
    groups = con.sql(sql).to_arrow_table()
    query_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.sql(sql).to_arrow_table()
    query_warm_s = time.perf_counter() - t0
    shutil.rmtree(workdir)

    print(f"rows                 {args.rows:,} in {n_parts} parts of {args.part_rows:,}")
    print(f"build arrow tables   {build_s:.2f} s")
    print(f"write (atomic)       {write_s:.2f} s  -> {args.rows / write_s:,.0f} rows/s")
    print(f"on disk              {size / 2**20:.1f} MiB ({size / args.rows:.1f} bytes/row)")
    print(
        f"aggregate query      {query_s:.2f} s cold, {query_warm_s:.2f} s warm "
        f"-> {groups.num_rows:,} unordered pairs ({args.threads} threads)"
    )


if __name__ == "__main__":
    main()
