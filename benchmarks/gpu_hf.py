"""The hf scorer's hot path and the fit on one GPU: prompts/s, TFLOP/s and the share of peak.

One prepared command for a lent GPU (about 3 minutes on an H200; the device budget is 8):

    python3 benchmarks/gpu_hf.py            # 1B- and 8B-shaped models, 150-token prompts, fit
    python3 benchmarks/gpu_hf.py --tiny     # tiny shapes on the CPU: checks the script (tests do)

**Scorer.** Randomly initialised Llama-3.2-1B- and Llama-3-8B-shaped models (built from a
config straight on the GPU in bf16; nothing downloaded) score batches of prompt-length token
sequences exactly as :class:`elicit.scorers.hf.HFScorer` does in logprob mode: length-sorted
batches, left padding with mask-derived positions (:func:`elicit.padding.left_pad`, the scorer's
own code), logits for the last position only (``logits_to_keep=1``), log-softmax and a gather of
the letter tokens, results copied to the host every batch. Needs only numpy, torch and
transformers, so it runs under a GPU image's stock Python.

FLOPs per prompt = 2·N·T + 2·d·V, with N the parameters of the transformer body (embedding and
output matrices excluded), T the prompt tokens and d·V the output head on one position;
attention's T² term is left out (0.3 % at T = 150 for the 8B shape). Share of peak = achieved
FLOP/s ÷ ``--peak``, default 989 TFLOP/s: NVIDIA's datasheet figure for H100/H200 SXM dense
bf16 (1,979 with 2:4 sparsity). Prompts are random token ids (a model's speed does not depend on
which tokens it reads).

**vLLM** runs only where it is importable (a GPU image without it cannot take the wheel in one
carry: the wheel alone is far above the device tool's 64 MiB): ``--vllm`` then scores the same
token ids with ``LLM.generate`` on the 1B shape saved to a temporary folder.

**Fit.** Synthetic Thurstonian comparisons (``--fit-outcomes`` outcomes, each paired with
⌈2·log2 N⌉ random others, soft labels from known utilities): the torch backend on the device
(float32) against the numpy fit on the host, seconds and correlation of the utilities to truth.

Without a CUDA GPU (and without ``--tiny``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # elicit/, fit/ from this checkout

#: Llama shapes (weights are random): hidden, intermediate, layers, heads, kv heads, vocab, tied.
SHAPES: dict[str, tuple[int, int, int, int, int, int, bool]] = {
    "1b": (2048, 8192, 16, 32, 8, 128256, True),
    "8b": (4096, 14336, 32, 32, 8, 128256, False),
}
TINY = (64, 128, 2, 4, 2, 512, False)


def llama_config(shape: str, tiny: bool = False) -> Any:
    """A LlamaConfig of one of :data:`SHAPES` (``tiny``: a small model of the same kind)."""
    from transformers import LlamaConfig

    hidden, inter, layers, heads, kv, vocab, tied = TINY if tiny else SHAPES[shape]
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
    )


def body_and_head(model: Any, config: Any) -> tuple[int, int]:
    """Parameters of the transformer body and of the output head (d·V)."""
    head = config.vocab_size * config.hidden_size
    body = sum(
        p.numel()
        for name, p in model.named_parameters()
        if "embed_tokens" not in name and "lm_head" not in name
    )
    return body, head


def score_shape(shape: str, args: argparse.Namespace, device: Any, dtype: Any) -> dict[str, Any]:
    """Build one random model and time the scorer's hot path at each batch size."""
    import torch
    from transformers import AutoModelForCausalLM

    from elicit.padding import left_pad

    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    config = llama_config(shape, args.tiny)
    started = time.perf_counter()
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    sync()
    build_s = time.perf_counter() - started
    body, head = body_and_head(model, config)
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.min_tokens, args.max_tokens + 1, size=args.prompts)
    prompts = [rng.integers(3, config.vocab_size, size=int(n)).tolist() for n in lengths]
    order = np.argsort(-lengths, kind="stable")  # the scorer's length sort
    letters = torch.tensor([32, 362, 33, 426], device=device) % config.vocab_size
    tokens = int(lengths.sum())
    flops = 2 * body * tokens + 2 * head * args.prompts

    def run(batch_size: int) -> float:
        sync()
        started = time.perf_counter()
        for start in range(0, args.prompts, batch_size):
            rows = order[start : start + batch_size]
            ids, mask, positions = left_pad([prompts[r] for r in rows], 2, device)
            with torch.inference_mode():
                logits = model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=1,
                    use_cache=False,
                ).logits[:, -1, :]
                picked = torch.log_softmax(logits.float(), dim=-1)[:, letters]
            picked.cpu()  # the scorer copies results to the host every batch
        sync()
        return time.perf_counter() - started

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    run(max(sizes))  # warm-up: kernels, allocator
    rows = []
    for size in sizes:
        seconds = run(size)
        achieved = flops / seconds / 1e12
        rows.append((size, seconds, args.prompts / seconds, tokens / seconds, achieved))
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    result = {
        "shape": shape,
        "params_b": (body + head * (1 if config.tie_word_embeddings else 2)) / 1e9,
        "body_b": body / 1e9,
        "build_s": build_s,
        "mean_tokens": float(lengths.mean()),
        "tflop_per_pass": flops / 1e12,
        "rows": rows,
        "peak_mem_gib": peak_gib,
        "model": model,
        "config": config,
    }
    return result


def vllm_shape(
    result: dict[str, Any], args: argparse.Namespace, device: Any
) -> tuple[float, float] | None:
    """``LLM.generate`` on the same shape (saved to a temporary folder); prompts/s, TFLOP/s."""
    try:
        import vllm
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="gpu-hf-vllm-") as folder:
        result["model"].save_pretrained(folder)
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        vocab = {f"t{i}": i for i in range(result["config"].vocab_size)}
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, "t0")))
        tok.save_pretrained(folder)
        llm = vllm.LLM(
            model=folder, dtype="bfloat16", enable_prefix_caching=True, max_model_len=512
        )
        rng = np.random.default_rng(1)
        lengths = rng.integers(args.min_tokens, args.max_tokens + 1, size=args.prompts)
        prompts = [
            {"prompt_token_ids": rng.integers(3, result["config"].vocab_size, int(n)).tolist()}
            for n in lengths
        ]
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=4)
        llm.generate(prompts[:16], params, use_tqdm=False)
        started = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - started
    flops = 2 * result["body_b"] * 1e9 * lengths.sum() + 2 * (
        result["config"].vocab_size * result["config"].hidden_size
    ) * len(lengths)
    return args.prompts / seconds, flops / seconds / 1e12


def fit_on_device(n: int, device: str) -> dict[str, float]:
    """Torch fit on ``device`` vs the numpy fit, synthetic Thurstonian pairs."""
    from scipy.special import ndtr

    from fit.stats import PairStats
    from fit.thurstonian import fit_thurstonian
    from fit.torch_backend import fit_thurstonian_torch

    rng = np.random.default_rng(0)
    mu = rng.normal(size=n)
    sigma2 = rng.uniform(0.5, 1.5, size=n)
    degree = max(2, math.ceil(2 * math.log2(n)))
    i = np.repeat(np.arange(n), degree)
    j = (i + rng.integers(1, n, size=i.size)) % n
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keys = np.unique(lo * n + hi)
    lo, hi = keys // n, keys % n
    p = ndtr((mu[lo] - mu[hi]) / np.sqrt(sigma2[lo] + sigma2[hi]))
    stats = PairStats(lo, hi, np.ones(len(lo)), p, n)
    out: dict[str, float] = {"outcomes": n, "pairs": len(lo)}
    started = time.perf_counter()
    ref = fit_thurstonian(stats)
    out["numpy_s"] = time.perf_counter() - started
    out["numpy_r"] = float(np.corrcoef(ref.mu, mu)[0, 1])
    fit_thurstonian_torch(stats, device=device, dtype="float32", gtol=1e-4)  # warm-up
    started = time.perf_counter()
    got = fit_thurstonian_torch(stats, device=device, dtype="float32", gtol=1e-4)
    out["torch_s"] = time.perf_counter() - started
    out["torch_r"] = float(np.corrcoef(got.mu, mu)[0, 1])
    out["torch_vs_numpy_r"] = float(np.corrcoef(got.mu, ref.mu)[0, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1b,8b", help=f"of {','.join(SHAPES)}")
    parser.add_argument("--prompts", type=int, default=2048)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--min-tokens", type=int, default=150, help="shortest prompt")
    parser.add_argument("--max-tokens", type=int, default=150, help="longest prompt")
    parser.add_argument("--peak", type=float, default=989.0, help="peak dense bf16 TFLOP/s")
    parser.add_argument("--fit-outcomes", type=int, default=5000, help="0: no fit")
    parser.add_argument("--vllm", action="store_true", help="also vLLM, where importable")
    parser.add_argument(
        "--tiny", "--smoke", action="store_true", help="tiny shapes on the CPU (checks the script)"
    )
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print("gpu_hf: no CUDA GPU visible to torch; nothing to measure (run on a GPU machine)")
        return 0
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        name = "CPU, tiny shapes (checks the script, not speed)"
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        name = torch.cuda.get_device_name(0)
    import transformers

    print(
        f"gpu_hf: {name}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.prompts} prompts of {args.min_tokens}-{args.max_tokens} tokens, "
        f"peak {args.peak:.0f} TFLOP/s",
        flush=True,
    )
    header = f"{'batch':>5} {'seconds':>8} {'prompts/s':>10} {'tokens/s':>10} {'TFLOP/s':>8}"
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"gpu_hf: unknown shape {shape!r}; use {', '.join(SHAPES)}")
        result = score_shape(shape, args, device, dtype)
        print(
            f"\n{shape}-shaped Llama, random weights: {result['params_b']:.2f} B params "
            f"({result['body_b']:.2f} B in the body), built in {result['build_s']:.1f} s, "
            f"{result['tflop_per_pass']:.1f} TFLOP per pass; peak memory "
            f"{result['peak_mem_gib']:.1f} GiB",
            flush=True,
        )
        print(f"{header} {'of peak':>8}")
        for size, seconds, rate, tok_rate, achieved in result["rows"]:
            print(
                f"{size:>5} {seconds:>8.2f} {rate:>10.1f} {tok_rate:>10.0f} {achieved:>8.1f} "
                f"{achieved / args.peak:>8.1%}",
                flush=True,
            )
        if args.vllm and shape == "1b":
            measured = vllm_shape(result, args, device)
            if measured is None:
                print("vllm: not importable here; skipped")
            else:
                print(f"vllm LLM.generate: {measured[0]:.1f} prompts/s, {measured[1]:.1f} TFLOP/s")
        del result
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    if args.fit_outcomes:
        n = min(args.fit_outcomes, 200) if args.tiny else args.fit_outcomes
        fit = fit_on_device(n, device.type)
        print(
            f"\nfit, {fit['outcomes']:.0f} outcomes, {fit['pairs']:.0f} pairs: "
            f"torch on {device.type} {fit['torch_s']:.2f} s (r to truth {fit['torch_r']:.4f}), "
            f"numpy on the host {fit['numpy_s']:.2f} s (r {fit['numpy_r']:.4f}); "
            f"r between them {fit['torch_vs_numpy_r']:.5f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
