"""HF scorer throughput on CPU with the packaged model (SmolLM2-135M, fp32).

Scores the same oriented prompts (pairs of outcomes from the built-in ``starter`` set) at
several batch sizes and prints prompts/s and prompt tokens/s, plus the largest difference in
P(A) from the batch-size-1 run (left padding must not change the answer).

    .venv/bin/python benchmarks/hf_cpu.py [--prompts 200] [--batch-sizes 1,4,16,64]

The first run also converts the packaged GGUF into the cache (reported as "model ready").
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

#: Used when the built-in outcome set cannot be loaded (an old checkout).
FALLBACK_OUTCOMES = [
    "A new vaccine cuts childhood malaria deaths by half worldwide.",
    "You find a $1 coin lying on the pavement and keep it.",
    "You catch a mild cold that keeps you in bed for two days.",
    "A hospital in a mid-sized city closes, leaving 300,000 residents far from emergency care.",
    "Global life expectancy rises by five years over the next two decades.",
    "A wildfire destroys 2,000 homes in a coastal region.",
    "Your favourite café starts serving a new kind of pastry.",
    "A treaty bans the use of autonomous weapons in war.",
]


def outcome_texts() -> list[str]:
    """The starter outcome set's texts (or a fallback handful)."""
    try:
        from elicit.outcomes import load_outcomes

        return [outcome.text for outcome in load_outcomes("starter")]
    except Exception:  # benchmark still runs on a checkout without the starter set
        return list(FALLBACK_OUTCOMES)


def make_queries(n_outcomes: int, n: int, seed: int = 0):
    """``n`` oriented queries over distinct random pairs (a ≠ b), reproducible."""
    from elicit.scorers.base import QueryBatch

    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_outcomes, size=n)
    b = (a + rng.integers(1, n_outcomes, size=n)) % n_outcomes
    return QueryBatch(np.arange(n), a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="passes per setting; best is shown")
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    import torch

    from elicit.config import ModeConfig, ModelConfig, PromptConfig
    from elicit.models import resolve_model_path
    from elicit.prompts import PromptTemplate
    from elicit.scorers.hf import HFScorer

    texts = outcome_texts()
    queries = make_queries(len(texts), args.prompts)
    config = ModelConfig(name="smollm2-135m", scorer="hf", device="cpu")
    started = time.perf_counter()
    resolve_model_path(config)
    ready = time.perf_counter() - started
    started = time.perf_counter()
    scorer = HFScorer(config, ModeConfig(), PromptTemplate.from_config(PromptConfig()), texts)
    load = time.perf_counter() - started
    lengths = scorer.encoder.encode(queries).lengths
    print(
        f"hf scorer, smollm2-135m fp32, CPU ({os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads)"
    )
    print(f"model ready {ready:.2f} s, scorer load {load:.2f} s")
    print(
        f"{len(queries)} prompts from {len(texts)} outcomes, prompt tokens mean "
        f"{lengths.mean():.0f} (min {lengths.min()}, max {lengths.max()})"
    )
    scorer.model = config.model_copy(update={"batch_size": 4})
    scorer.score(queries.take(slice(0, 4)))  # warm-up
    reference = None
    print(f"{'batch':>5} {'seconds':>8} {'prompts/s':>10} {'tokens/s':>9} {'max|dP|':>9}")
    for size in sizes:
        scorer.model = config.model_copy(update={"batch_size": size})
        seconds = float("inf")
        for _ in range(args.repeat):  # best of N: this machine may be shared
            started = time.perf_counter()
            result = scorer.score(queries)
            seconds = min(seconds, time.perf_counter() - started)
        if reference is None:
            reference = result.p_a
        diff = float(np.nanmax(np.abs(result.p_a - reference)))
        print(
            f"{size:>5} {seconds:>8.2f} {len(queries) / seconds:>10.2f} "
            f"{lengths.sum() / seconds:>9.0f} {diff:>9.1e}"
        )
    scorer.close()


if __name__ == "__main__":
    main()
