"""Capacity planning: comparisons per GPU-hour by model size, and the cost of a full graph.

ESTIMATES, not measurements, until measured on GPUs. The model is the prefill FLOP count of
one logprob-mode prompt (one forward pass, no decoding):

    FLOPs per prompt ≈ 2 · N · T

with N the model's parameters and T the prompt's tokens (attention's T² term and the output
head are left out: a few % at T ≈ 100). T is measured, not assumed: every oriented prompt of
the built-in ``starter`` outcomes is rendered with the default template and counted with the
packaged SmolLM2 tokenizer (other tokenizers differ by roughly ±15 %). With the engine's
prefix cache (vLLM, on by default) the tokens every prompt shares (system turn, instructions)
are computed once, so the cached figure uses T minus that shared prefix.

Throughput per GPU = MFU × peak ÷ FLOPs per prompt, at an assumed MFU (default 40 % of the
989 TFLOP/s dense bf16 peak of an H100/H200 SXM) and perfect tensor-parallel scaling (a model
on k GPUs costs k GPU-hours per hour). A "comparison" is one oriented prompt; a full graph over
n outcomes asks n·(n−1) of them (510 outcomes: 259,590).

    .venv/bin/python benchmarks/capacity.py [--mfu 0.4] [--peak 989] [--outcomes 510]
    .venv/bin/python benchmarks/capacity.py --measure-cpu 256   # + the packaged model on CPU
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

#: Rows of the table: registry names spanning the sizes people sweep.
MODELS = [
    "smollm2-135m",
    "qwen2.5-0.5b-instruct",
    "llama-3.2-1b-instruct",
    "llama-3.2-3b-instruct",
    "llama-3.1-8b-instruct",
    "qwen2.5-14b-instruct",
    "qwen2.5-32b-instruct",
    "llama-3.1-70b-instruct",
]


def prompt_tokens() -> tuple[np.ndarray, int]:
    """Token counts of every oriented starter prompt, and the tokens all of them share."""
    from transformers import AutoTokenizer

    from elicit.config import ModelConfig, PromptConfig
    from elicit.models import resolve_model_path
    from elicit.outcomes import load_outcomes
    from elicit.prompts import PromptTemplate, accepts_system_role, render

    path = resolve_model_path(ModelConfig())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    template = PromptTemplate.from_config(PromptConfig(), "logprob")
    system_role = accepts_system_role(tokenizer)
    texts = [o.text for o in load_outcomes("starter")]
    ids = []
    for i, a in enumerate(texts):
        for j, b in enumerate(texts):
            if i != j:
                text = render(template, a, b, tokenizer=tokenizer, system_role=system_role)
                ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    lengths = np.array([len(x) for x in ids])
    shared = 0
    first = ids[0]
    while shared < len(first) and all(len(x) > shared and x[shared] == first[shared] for x in ids):
        shared += 1
    return lengths, shared


def measure_cpu(n: int) -> tuple[float, float]:
    """Prompts/s of the hf scorer with the packaged model on this machine's CPU, and the
    mean prompt tokens of the prompts it scored."""
    from elicit.config import ModeConfig, ModelConfig, PromptConfig
    from elicit.outcomes import load_outcomes
    from elicit.prompts import PromptTemplate
    from elicit.scorers.base import QueryBatch
    from elicit.scorers.hf import HFScorer

    texts = [o.text for o in load_outcomes("starter")]
    rng = np.random.default_rng(0)
    a = rng.integers(0, len(texts), size=n)
    b = (a + rng.integers(1, len(texts), size=n)) % len(texts)
    queries = QueryBatch(np.arange(n), a, b)
    config = ModelConfig(scorer="hf", device="cpu", batch_size=16)
    scorer = HFScorer(config, ModeConfig(), PromptTemplate.from_config(PromptConfig()), texts)
    scorer.score(queries.take(slice(0, 16)))  # warm-up
    started = time.perf_counter()
    scorer.score(queries)
    seconds = time.perf_counter() - started
    tokens = float(scorer.encoder.encode(queries).lengths.mean())
    scorer.close()
    return n / seconds, tokens


def _count(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.40, help="assumed model FLOP utilisation")
    parser.add_argument("--peak", type=float, default=989.0, help="peak TFLOP/s per GPU (bf16)")
    parser.add_argument("--outcomes", type=int, default=510, help="outcomes of the full graph")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs for the wall-clock column")
    parser.add_argument("--measure-cpu", type=int, default=0, metavar="N",
                        help="also score N prompts with the packaged model on CPU")  # fmt: skip
    args = parser.parse_args()

    from elicit.models import load_registry

    lengths, shared = prompt_tokens()
    t_mean = float(lengths.mean())
    t_cached = t_mean - shared
    prompts = args.outcomes * (args.outcomes - 1)
    flops_per_s = args.mfu * args.peak * 1e12
    print("ESTIMATES (not measured on GPUs): prefill FLOPs ≈ 2·N·T per prompt")
    print(
        f"prompt tokens T (starter set, default template, SmolLM2 tokenizer, "
        f"{len(lengths):,} prompts): mean {t_mean:.1f}, p50 {np.median(lengths):.0f}, "
        f"p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()}; shared prefix {shared}"
    )
    print(
        f"assumed {args.mfu:.0%} MFU of {args.peak:g} TFLOP/s = {flops_per_s / 1e12:.0f} "
        f"TFLOP/s per GPU; full graph over {args.outcomes} outcomes = {prompts:,} prompts\n"
    )
    registry = load_registry()
    print(
        "| model | params (B) | GPUs/replica | comparisons per GPU-hour | with prefix cache | "
        f"full graph ({args.outcomes}): GPU-hours | wall clock on {args.gpus} GPUs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in MODELS:
        entry = registry[name]
        n = (entry.params_b or 0.0) * 1e9
        per_hour = flops_per_s / (2 * n * t_mean) * 3600
        per_hour_cached = flops_per_s / (2 * n * t_cached) * 3600
        gpu_hours = prompts / per_hour_cached
        print(
            f"| {name} | {entry.params_b:g} | {max(entry.gpus, 1):g} | {_count(per_hour)} | "
            f"{_count(per_hour_cached)} | {gpu_hours:.3g} | {_duration(gpu_hours / args.gpus)} |"
        )
    print(
        "\nN counts every parameter (embeddings too: a slight overestimate below ~1B). Models "
        "under ~1B are far from FLOP-bound (engine overhead, scheduling), so their rows are "
        "upper bounds; ≥ 8B the estimate is the one to check first on real GPUs."
    )
    if args.measure_cpu:
        rate, tokens = measure_cpu(args.measure_cpu)
        n = (registry["smollm2-135m"].params_b or 0.0) * 1e9
        print(
            f"\nMEASURED: smollm2-135m, hf scorer, fp32, CPU ({os.cpu_count()} cores), batch 16: "
            f"{rate:.1f} prompts/s = {rate * 3600:,.0f} comparisons per hour "
            f"(T ≈ {tokens:.0f}; achieved ≈ {rate * 2 * n * tokens / 1e9:.1f} GFLOP/s); "
            f"full graph ({args.outcomes}) ≈ {prompts / rate / 3600:.1f} h on this machine"
        )


if __name__ == "__main__":
    main()
