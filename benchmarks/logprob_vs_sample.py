"""Logprob mode against the paper's sampling protocol, same model, same prompts.

Scores the full graph of ``--outcomes`` outcomes from the built-in ``starter`` set, both
orders (n·(n−1) prompts), once in ``logprob`` mode (one forward pass, the letters' probability)
and once in ``sample`` mode (K completions at temperature 1, parsed for a letter). Prints the
wall time of each, their ratio, and how well the two agree:

- Spearman of the oriented P(A) per prompt,
- Spearman of the per-pair P(a ≻ b) with both orders averaged (what the fit sees),
- the share of pairs whose preferred side is the same.

    .venv/bin/python benchmarks/logprob_vs_sample.py [--scorer hf] [--outcomes 30] [--k 10]
    .venv-vllm/bin/python benchmarks/logprob_vs_sample.py --scorer vllm
    python benchmarks/logprob_vs_sample.py --scorer vllm --model Qwen/Qwen2.5-7B-Instruct  # GPU
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.stats import spearmanr


def pair_p(p_a: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """P(i ≻ j) for i < j, averaging the two orders: (P_A(i,j) + 1 − P_A(j,i)) / 2."""
    m = np.full((n, n), np.nan)
    m[a, b] = p_a
    i, j = np.triu_indices(n, 1)
    return (m[i, j] + 1.0 - m[j, i]) / 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scorer", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--model", default="smollm2-135m", help="registry name, HF id or folder")
    parser.add_argument("--device", default="cpu", help="hf scorer: cpu, cuda or auto")
    parser.add_argument("--outcomes", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from elicit.config import ModeConfig, ModelConfig, PromptConfig
    from elicit.outcomes import load_outcomes
    from elicit.prompts import PromptTemplate
    from elicit.scorers import make_scorer
    from elicit.scorers.base import QueryBatch

    texts = [o.text for o in load_outcomes("starter")][: args.outcomes]
    n = len(texts)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    keep = a != b
    a, b = a[keep], b[keep]
    queries = QueryBatch(np.arange(len(a)), a, b)
    template = PromptTemplate.from_config(PromptConfig())
    model = ModelConfig(
        name=args.model, scorer=args.scorer, device=args.device, batch_size=args.batch_size
    )
    modes = {
        "logprob": ModeConfig(),
        "sample": ModeConfig(kind="sample", k=args.k, temperature=1.0, max_tokens=args.max_tokens),
    }
    print(
        f"{args.scorer} scorer, {args.model} on {os.cpu_count()} cores; {n} outcomes, "
        f"full graph both orders = {len(queries)} prompts; sample K={args.k}, T=1, "
        f"max_tokens={args.max_tokens}"
    )
    results = {}
    seconds = {}
    for name, mode in modes.items():
        with make_scorer(model, mode, template, texts) as scorer:
            scorer.score(queries.take(slice(0, 2)))  # warm-up (compilation, caches)
            started = time.perf_counter()
            results[name] = scorer.score(queries)
            seconds[name] = time.perf_counter() - started
        out = results[name]
        errors = sum(e is not None for e in out.error)
        extra = ""
        if out.n_unparsed is not None:
            extra = f", unparsed completions {out.n_unparsed.sum() / (len(queries) * args.k):.1%}"
        print(
            f"{name:>8}: {seconds[name]:8.1f} s, {len(queries) / seconds[name]:7.2f} prompts/s, "
            f"error rows {errors}{extra}"
        )
    lp, sp = results["logprob"].p_a, results["sample"].p_a
    ok = np.isfinite(lp) & np.isfinite(sp)
    rho_oriented = spearmanr(lp[ok], sp[ok]).statistic
    pl, ps = pair_p(lp, a, b, n), pair_p(sp, a, b, n)
    both = np.isfinite(pl) & np.isfinite(ps)
    rho_pair = spearmanr(pl[both], ps[both]).statistic
    same_side = np.mean((pl[both] > 0.5) == (ps[both] > 0.5))
    print(f"wall-time ratio sample/logprob: {seconds['sample'] / seconds['logprob']:.1f}x")
    print(
        f"first-listed option chosen: logprob {np.mean(lp[ok] > 0.5):.1%}, "
        f"sample {np.mean(sp[ok] > 0.5):.1%}"
    )
    print(f"Spearman oriented P(A): {rho_oriented:.3f} over {ok.sum()} prompts")
    print(f"Spearman per-pair P(a>b), orders averaged: {rho_pair:.3f} over {both.sum()} pairs")
    print(f"same preferred side: {same_side:.1%}")


if __name__ == "__main__":
    main()
