"""The same prompts three ways on vLLM: the bare engine, valuescope through Ray, Ray Data LLM.

Every ordered pair of the first ``--outcomes`` outcomes of the built-in ``starter`` set (46 give
2,070 prompts), the packaged SmolLM2-135M, logprob mode (one generated token, the letters' log-
probabilities requested by id), the same engine settings for all three (valuescope's CPU
defaults: fp32, eager, prefix caching on, a fixed KV cache, every core bound to the worker):

* ``bare``: one ``vllm.LLM`` in this process, ``LLM.generate`` over all prompts at once (the
  prompts as the token ids valuescope's encoder makes). Start-up: the engine's construction;
  steady state: the ``generate`` call, after a warm-up call of 8 prompts.
* ``valuescope``: the public elicitation API (``elicit(spec)``, design ``full``) with vLLM
  replicas on a private local Ray, writing Parquet parts. Start-up: from the call until the
  last round begins (Ray, replica engine, the held-out round); steady state: the last round
  (every prompt but the held-out ones), as the driver times it.
* ``raydata``: ``ray.data.llm`` (``vLLMEngineProcessorConfig`` + ``build_processor``) with the
  same token ids and sampling parameters; chat-template, tokenize and detokenize stages off.
  Its engine starts inside the pipeline, so start-up is the time to the first 10 % of rows and
  steady state the rate from there to the last row (rows are time-stamped as they come out).

Prints prompts/s per arm (start-up separately), the ratios, and the agreement of P(A) between
arms on the same oriented pairs (largest |difference|, Pearson r). Runs in the environment
``scripts/vllm-env`` builds (it carries pandas, which ``ray.data`` needs):

    .venv-vllm/bin/python benchmarks/vllm_three_way.py [--outcomes 46] [--arms bare,valuescope,raydata]

On a GPU machine the same script runs the engines on the GPU (``--gpu``: bf16, no CPU pinning).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "smollm2-135m"


def outcomes(n: int) -> list[tuple[str, str]]:
    """(id, text) of the first ``n`` starter outcomes."""
    from elicit.outcomes import load_outcomes

    loaded = load_outcomes("starter")
    if len(loaded) < n:
        raise SystemExit(f"the starter set has {len(loaded)} outcomes; use --outcomes ≤ that")
    return [(o.id, o.text) for o in loaded.outcomes[:n]]


class Setup:
    """What every arm shares: prompts (token ids), engine kwargs, sampling parameters."""

    def __init__(self, n_outcomes: int, gpu: bool) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from elicit.config import ModeConfig, ModelConfig, PromptConfig
        from elicit.models import resolve_model_path
        from elicit.prompts import PromptTemplate
        from elicit.scorers import vllm as vs
        from elicit.scorers.base import QueryBatch
        from elicit.scorers.tokens import PromptEncoder, letter_token_ids, registry_entry

        self.gpu = gpu
        self.items = outcomes(n_outcomes)
        self.config = ModelConfig(name=MODEL, scorer="vllm")
        self.mode = ModeConfig()
        self.path = resolve_model_path(self.config)
        tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        a, b = np.nonzero(~np.eye(n_outcomes, dtype=bool))  # every ordered pair, a ≠ b
        self.a, self.b = a, b
        entry = registry_entry(self.config)
        template = PromptTemplate.from_config(PromptConfig())
        encoder = PromptEncoder(
            tokenizer, template, [t for _, t in self.items], chat=entry.chat if entry else None,
            system_role=True, max_context=8191,
        )  # fmt: skip
        self.token_ids = encoder.encode(QueryBatch(np.arange(len(a)), a, b)).token_ids
        self.letters = letter_token_ids(tokenizer)
        native = AutoConfig.from_pretrained(self.path, local_files_only=True)
        max_len = min(int(native.max_position_embeddings), vs.DEFAULT_MAX_MODEL_LEN)
        self.engine_kwargs = vs.engine_kwargs(self.config, self.mode, max_len, cpu=not gpu)
        self.env: dict[str, str] = {}
        if not gpu and (bind := vs.cpu_thread_binding()):
            self.env["VLLM_CPU_OMP_THREADS_BIND"] = bind
        os.environ.update(self.env)
        ids = sorted({i for group in self.letters.values() for i in group})
        self.sampling = {
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": len(ids),
            "logprob_token_ids": ids,
            "detokenize": False,
        }

    def p_a(self, top: dict[Any, Any]) -> float:
        """P(A) from one position's {token id: logprob} (ids may come back as strings)."""
        lp = {}
        for letter, ids in self.letters.items():
            values = [_logprob(top[k]) for t in ids for k in (t, str(t)) if k in top]
            lp[letter] = np.logaddexp.reduce(values) if values else -np.inf
        return float(1.0 / (1.0 + np.exp(lp["B"] - lp["A"])))


def _logprob(value: Any) -> float:
    if isinstance(value, dict):
        return float(value["logprob"])
    return float(getattr(value, "logprob", value))


def bare(setup: Setup) -> dict[str, Any]:
    import vllm

    started = time.perf_counter()
    llm = vllm.LLM(model=setup.path, tokenizer=setup.path, **setup.engine_kwargs)
    start_s = time.perf_counter() - started
    params = vllm.SamplingParams(**setup.sampling)
    prompts = [{"prompt_token_ids": ids} for ids in setup.token_ids]
    llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up
    started = time.perf_counter()
    results = llm.generate(prompts, params, use_tqdm=False)
    steady_s = time.perf_counter() - started
    p = np.array([setup.p_a(r.outputs[0].logprobs[0]) for r in results])
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return {"start_s": start_s, "steady_rate": len(p) / steady_s, "p_a": p}


def valuescope(setup: Setup, replicas: int, shard_size: int) -> dict[str, Any]:
    import yaml

    try:  # the public Python API (moving from cluster.pipeline.run to the package façade)
        from cluster import elicit  # type: ignore[attr-defined]
    except ImportError:
        from cluster.pipeline.run import elicit
    from cluster.spec import RunSpec
    from storage.catalog import query

    work = Path(tempfile.mkdtemp(prefix="vs-three-way-"))
    path = work / "outcomes.yaml"
    path.write_text(yaml.safe_dump([{"id": i, "text": t} for i, t in setup.items]))
    model: dict[str, Any] = {"name": MODEL, "scorer": "vllm", "replicas": replicas}
    if setup.gpu:
        model["gpus_per_replica"] = 1
    spec = RunSpec.model_validate(
        {
            "name": "three-way",
            "root": str(work / "results"),
            "outcomes": [str(path)],
            "models": [model],
            "design": {"kind": "full"},
            "execution": {
                "shard_size": shard_size,
                "progress": "none",
                "num_cpus_per_replica": max(1, (os.cpu_count() or 2) // replicas)
                if not setup.gpu
                else 1,
            },
        }
    )
    started = time.perf_counter()
    rounds = elicit(spec)
    wall = time.perf_counter() - started
    last = rounds[-1]
    table = query(
        str(work / "results"),
        "SELECT outcome_a, outcome_b, p_a FROM comparisons WHERE error IS NULL",
    ).to_pydict()
    index = {oid: k for k, (oid, _) in enumerate(setup.items)}
    got = {
        (index[a], index[b]): p
        for a, b, p in zip(table["outcome_a"], table["outcome_b"], table["p_a"], strict=True)
    }
    p = np.array([got.get((int(a), int(b)), np.nan) for a, b in zip(setup.a, setup.b, strict=True)])
    return {
        "start_s": wall - last.seconds,
        "steady_rate": last.rows_written / last.seconds,
        "wall_s": wall,
        "rounds": [(r.round, r.rows_written, round(r.seconds, 1)) for r in rounds],
        "p_a": p,
    }


def raydata(setup: Setup, batch_size: int) -> dict[str, Any]:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from cluster.execution.ray_runtime import init_ray

    init_ray(None)
    config = vLLMEngineProcessorConfig(
        model_source=setup.path,
        engine_kwargs=dict(setup.engine_kwargs),
        batch_size=batch_size,
        concurrency=1,
        placement_group_config=None if setup.gpu else {"bundles": [{"CPU": 1}]},
        accelerator_type=None,
        log_engine_metrics=False,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        runtime_env={"env_vars": setup.env} if setup.env else None,
    )
    sampling = setup.sampling
    letters = setup.letters

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        return {"row": row["row"], "tokenized_prompt": row["ids"], "sampling_params": sampling}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        top = row["logprobs"][0]
        lp = {}
        for letter, ids in letters.items():
            values = [_logprob(top[k]) for t in ids for k in (t, str(t)) if k in top]
            lp[letter] = float(np.logaddexp.reduce(values)) if values else float("-inf")
        return {"row": row["row"], "lp": json.dumps(lp), "done": time.time()}

    processor = build_processor(config, preprocess=pre, postprocess=post)
    data = ray.data.from_items(
        [{"row": k, "ids": list(ids)} for k, ids in enumerate(setup.token_ids)]
    )
    started = time.time()
    rows = processor(data).take_all()
    wall = time.time() - started
    done = np.sort(np.array([r["done"] for r in rows])) - started
    p = np.full(len(setup.token_ids), np.nan)
    for r in rows:
        lp = json.loads(r["lp"])
        p[int(r["row"])] = 1.0 / (1.0 + np.exp(lp["B"] - lp["A"]))
    tenth = int(0.1 * len(done))
    return {
        "start_s": float(done[tenth]),
        "steady_rate": (len(done) - tenth) / float(done[-1] - done[tenth]),
        "wall_s": wall,
        "p_a": p,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=46, help="N: N·(N−1) prompts")
    parser.add_argument("--arms", default="bare,valuescope,raydata")
    parser.add_argument("--replicas", type=int, default=1, help="valuescope replicas")
    parser.add_argument("--shard-size", type=int, default=1024, help="valuescope shard size")
    parser.add_argument("--raydata-batch", type=int, default=256, help="Ray Data LLM batch")
    parser.add_argument("--gpu", action="store_true", help="engines on the GPU (bf16)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    setup = Setup(args.outcomes, args.gpu)
    import vllm

    print(
        f"vllm {vllm.__version__}, {MODEL}, {len(setup.token_ids)} prompts "
        f"(mean {np.mean([len(t) for t in setup.token_ids]):.0f} tokens), "
        f"{os.cpu_count()} cores, engine {setup.engine_kwargs}, env {setup.env}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for arm in args.arms.split(","):
        try:
            if arm == "bare":
                results[arm] = bare(setup)
            elif arm == "valuescope":
                results[arm] = valuescope(setup, args.replicas, args.shard_size)
            elif arm == "raydata":
                results[arm] = raydata(setup, args.raydata_batch)
            else:
                raise SystemExit(f"unknown arm {arm!r}; use bare, valuescope, raydata")
        except SystemExit:
            raise
        except Exception as exc:  # one arm failing must not hide the others' figures
            print(f"{arm}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            continue
        r = results[arm]
        extra = {k: v for k, v in r.items() if k not in ("p_a", "start_s", "steady_rate")}
        print(
            f"{arm:>10}: start-up {r['start_s']:6.1f} s, steady {r['steady_rate']:6.2f} prompts/s"
            f"  {extra}",
            flush=True,
        )
    names = list(results)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            px, py = results[x]["p_a"], results[y]["p_a"]
            both = np.isfinite(px) & np.isfinite(py)
            ratio = results[x]["steady_rate"] / results[y]["steady_rate"]
            r = np.corrcoef(px[both], py[both])[0, 1] if both.sum() > 1 else np.nan
            print(
                f"{x} / {y}: steady {ratio:.3f}x; P(A) on {both.sum()} prompts: "
                f"max |diff| {np.max(np.abs(px[both] - py[both])):.2e}, r {r:.6f}"
            )


if __name__ == "__main__":
    main()
