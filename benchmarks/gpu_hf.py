"""HF scorer hot path on a GPU: prompts/s and model FLOP utilisation (MFU).

A randomly initialised Llama-3-8B-shaped model (built from a config on the GPU, bf16, nothing
downloaded) scores batches of prompt-length token sequences the way
:class:`elicit.scorers.hf.HFScorer` does in logprob mode: length-sorted batches, left padding,
position ids from the attention mask, logits for the last position only (``logits_to_keep=1``),
log-softmax and a gather of the letter tokens. Standalone: needs only torch and transformers.

    python benchmarks/gpu_hf.py [--prompts 2048] [--batch-sizes 1,16,64,256] [--peak 989]

FLOPs per prompt ≈ 2·N·T + 2·d·V, with N the parameters of the transformer body (embedding and
output matrices excluded), T the prompt tokens, d·V the output head applied to one position
(attention's T² term is ignored: under 3 % at T ≈ 110). MFU = achieved FLOP/s ÷ the peak
(989 TFLOP/s: H100/H200 SXM dense bf16). Without a CUDA GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time


def llama3_8b_config(smoke: bool = False):  # type: ignore[no-untyped-def]
    """The shape of Llama-3-8B (weights are random); ``smoke``: a tiny model of the same
    architecture, to check the script itself on a CPU."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256 if not smoke else 512,
        hidden_size=4096 if not smoke else 64,
        intermediate_size=14336 if not smoke else 128,
        num_hidden_layers=32 if not smoke else 2,
        num_attention_heads=32 if not smoke else 4,
        num_key_value_heads=8 if not smoke else 2,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=128000 if not smoke else 1,
        eos_token_id=128009 if not smoke else 2,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2048)
    parser.add_argument("--batch-sizes", default="1,16,64,256")
    parser.add_argument("--min-tokens", type=int, default=95, help="shortest prompt")
    parser.add_argument("--max-tokens", type=int, default=130, help="longest prompt")
    parser.add_argument("--peak", type=float, default=989.0, help="peak bf16 TFLOP/s")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny model on CPU: checks the script, not speed"
    )
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("gpu_hf: no CUDA GPU visible to torch; nothing to measure (run on a GPU machine)")
        return 0
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cuda = not args.smoke
    device = torch.device("cuda" if cuda else "cpu")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    config = llama3_8b_config(smoke=args.smoke)
    started = time.perf_counter()
    with device:
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16 if cuda else torch.float32
        )
    model.eval()
    sync()
    build_s = time.perf_counter() - started
    total = sum(p.numel() for p in model.parameters())
    head = config.vocab_size * config.hidden_size
    body = total - 2 * head  # input embedding and output head are separate matrices here
    name = torch.cuda.get_device_name(0) if cuda else "CPU smoke run (tiny model)"
    print(
        f"gpu_hf: {name}, torch {torch.__version__}, Llama-3-8B architecture, random weights, "
        f"{total / 1e9:.2f} B params ({body / 1e9:.2f} B in the body), built in {build_s:.1f} s"
    )

    lengths = torch.randint(args.min_tokens, args.max_tokens + 1, (args.prompts,))
    prompts = [torch.randint(0, config.vocab_size, (int(n),)) for n in lengths]
    order = torch.argsort(lengths, descending=True)  # the scorer's length sort
    letters = (
        torch.tensor([32, 362, 33, 426], device=device) % config.vocab_size
    )  # stand-ins for A, " A", B, " B"
    tokens = int(lengths.sum())
    flops = 2 * body * tokens + 2 * head * args.prompts
    print(
        f"{args.prompts} prompts, {args.min_tokens}-{args.max_tokens} tokens "
        f"(mean {lengths.float().mean():.0f}); {flops / 1e12:.1f} TFLOP per pass"
    )

    def run(batch_size: int) -> float:
        sync()
        started = time.perf_counter()
        for start in range(0, args.prompts, batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = torch.full((len(rows), width), config.eos_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows.tolist()):
                seq = prompts[row]
                ids[i, width - len(seq) :] = seq
                mask[i, width - len(seq) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            ids, mask, positions = (t.to(device, non_blocking=True) for t in (ids, mask, positions))
            with torch.inference_mode():
                logits = model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=1,
                    use_cache=False,
                ).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1)[:, letters]
            logprobs.cpu()  # the scorer copies results to the host every batch
        sync()
        return time.perf_counter() - started

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    run(max(sizes))  # warm-up: kernels, allocator
    print(
        f"{'batch':>5} {'seconds':>8} {'prompts/s':>10} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6}"
    )
    for size in sizes:
        seconds = run(size)
        achieved = flops / seconds / 1e12
        print(
            f"{size:>5} {seconds:>8.2f} {args.prompts / seconds:>10.1f} "
            f"{tokens / seconds:>10.0f} {achieved:>8.1f} {achieved / args.peak:>6.1%}"
        )
    if cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
