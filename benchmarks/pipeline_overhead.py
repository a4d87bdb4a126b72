"""Benchmark: pipeline overhead of the elicitation engine.

The index-reading simulated agent (``simulated-fast``, microseconds per prompt) answers a full graph of N outcomes
(N·(N−1) oriented prompts; N=1001 gives 1,001,000) through local Ray replicas into Parquet
parts, so the figure measures valuescope's own driver, actors and writer — what must never
limit a fleet of GPUs.

    python benchmarks/pipeline_overhead.py --outcomes 1001 --shard-size 20000 --replicas 2

``--model simulated`` runs the prompt-reading agent instead (it renders and reads every prompt,
as a model would be sent it), to show what the text path costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from cluster.pipeline.run import elicit
from cluster.spec import RunSpec
from storage.catalog import query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outcomes", type=int, default=1001)
    parser.add_argument("--shard-size", type=int, nargs="+", default=[20000])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--model", default="simulated-fast", choices=["simulated-fast", "simulated"]
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vs-pipeline-"))
    outcomes = work / "outcomes.yaml"
    outcomes.write_text(
        yaml.safe_dump(
            [
                {"id": f"o{i:05d}", "text": f"Outcome number {i} happens."}
                for i in range(args.outcomes)
            ]
        )
    )
    from cluster.execution.ray_runtime import init_ray

    t0 = time.perf_counter()
    init_ray(None)
    print(f"ray start            {time.perf_counter() - t0:.1f} s")
    for shard_size in args.shard_size:
        root = work / f"results-{shard_size}"
        spec = RunSpec.model_validate(
            {
                "name": "bench",
                "root": str(root),
                "outcomes": [str(outcomes)],
                "models": [{"name": args.model, "replicas": args.replicas}],
                "design": {"kind": "full"},
                "execution": {
                    "shard_size": shard_size,
                    "progress": "none",
                    "num_cpus_per_replica": 0.5,
                },
            }
        )
        t0 = time.perf_counter()
        rounds = elicit(spec)  # the held-out round, then the rest of the full graph
        wall = time.perf_counter() - t0
        rows = query(str(root), "SELECT count(*) AS n FROM comparisons").column("n")[0].as_py()
        in_rounds = sum(r.seconds for r in rounds)
        written = sum(r.rows_written for r in rounds)
        print(
            f"shard {shard_size:>7,}: {rows:,} prompts in {wall:.2f} s wall "
            f"(rounds {in_rounds:.2f} s) -> {rows / wall:,.0f} prompts/s end to end, "
            f"{written / in_rounds:,.0f} prompts/s in the rounds; "
            f"{sum(r.shards_total for r in rounds)} shards in {len(rounds)} rounds, "
            f"{args.replicas} replicas, {args.model}"
        )


if __name__ == "__main__":
    main()
