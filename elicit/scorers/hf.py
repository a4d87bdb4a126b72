"""The transformers scorer: one model on CPU or one CUDA device, batched.

``logprob`` mode runs one forward pass per batch of left-padded prompts, computes logits for the
last position only, and reads the probability of the tokens that spell each letter.
``sample`` and ``reasoning`` modes generate K completions per prompt and parse them.

Prompts are sorted by token length before batching (less padding) and results are put back in
query order. A prompt longer than the context is an error row, never an exception.

What this scorer shares with the vLLM scorer (prompt encoding, letter tokens, output columns)
lives in :mod:`elicit.scorers.tokens`; padding in :mod:`elicit.padding`. This module imports torch
and transformers only inside functions.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import MissingDependencyError, ScorerError
from elicit.models import ModelEntry, is_local, resolve_model_path
from elicit.padding import left_pad
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

# Names other modules still import from here (kept while callers move to the tokens module).
__all__ = [
    "RESPONSE_FORMAT",
    "HFScorer",
    "PromptEncoder",
    "letter_token_ids",
    "registry_entry",
    "resolve_chat_kwargs",
    "resolve_max_context",
]

logger = logging.getLogger(__name__)

#: Separator-free storage of K completions in the ``response`` column: a JSON list of strings.
RESPONSE_FORMAT = "json-list"
#: Context lengths above this in a tokenizer config are placeholders ("no limit"), not facts.
_NO_LIMIT = 10_000_000


def resolve_max_context(
    model: ModelConfig, entry: ModelEntry | None, native: int | None, tokenizer: Any
) -> int:
    """Config, then registry, then the model config, then the tokenizer's limit."""
    for value in (model.max_context, entry.max_context if entry else None, native):
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
        return limit
    raise ScorerError(
        f"model {model.name!r}: cannot tell its context length; set max_context in the spec"
    )


# --- the scorer ------------------------------------------------------------------------------


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the hf scorer needs torch and transformers ({exc}); pip install torch transformers"
        ) from exc
    return torch, transformers


class HFScorer(Scorer):
    """Scores queries with a transformers causal LM.

    Args:
        model: the model section; ``device``/``dtype`` ``auto`` mean CUDA + bf16 when a GPU is
            visible, else CPU + fp32; ``batch_size`` is prompts per forward pass (times K
            completions in sampling modes).
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
        torch, transformers = _import_torch()
        self._torch = torch
        self.entry = registry_entry(model)
        self.path = resolve_model_path(model)
        self.device = self._pick_device(model.device)
        self.dtype = self._pick_dtype(model.dtype)
        local = is_local(self.path)
        started = time.perf_counter()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.path, local_files_only=local
            )
            # straight onto the GPU (no full copy in host RAM first)
            placement = {"device_map": self.device} if self.device != "cpu" else {}
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                self.path, dtype=self.dtype, local_files_only=local, **placement
            )
        except OSError as exc:
            raise ScorerError(f"model {model.name!r}: cannot load {self.path!r}: {exc}") from exc
        self.lm = (lm if placement else lm.to(self.device)).eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        logger.info(
            "loaded %s (%s) on %s/%s in %.1f s",
            model.name,
            self.path,
            self.device,
            str(self.dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )
        native = getattr(self.lm.config, "max_position_embeddings", None)
        self.encoder = PromptEncoder(
            tokenizer,
            template,
            self.outcome_texts,
            chat=model.chat
            if model.chat is not None
            else (self.entry.chat if self.entry else None),
            system_role=resolve_system_role(model, self.entry, tokenizer),
            max_context=resolve_max_context(model, self.entry, native, tokenizer),
            chat_kwargs=resolve_chat_kwargs(model, self.entry, mode),
        )
        self.letter_ids = letter_token_ids(tokenizer) if mode.kind == "logprob" else {}
        self._keep_arg = "logits_to_keep" in inspect.signature(self.lm.forward).parameters
        self._rng = np.random.default_rng(model.seed)
        torch.manual_seed(model.seed)

    def _pick_device(self, device: str) -> str:
        torch = self._torch
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerError(f"device {device!r} requested but torch sees no CUDA GPU")
        return device

    def _pick_dtype(self, dtype: str) -> Any:
        torch = self._torch
        if dtype == "auto":
            return torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if dtype not in table:
            raise ScorerError(f"dtype {dtype!r} is not supported; use auto, {', '.join(table)}")
        return table[dtype]

    @property
    def max_context(self) -> int:
        """Longest prompt in tokens; longer prompts become error rows."""
        return self.encoder.max_context

    def render(self, a_idx: int, b_idx: int) -> str:
        return self.encoder.render(a_idx, b_idx)

    def score(self, batch: QueryBatch) -> Measurements:
        n = len(batch)
        out = empty_measurements(n, self.mode)
        encoded = self.encoder.encode(batch)
        self.encoder.mark_too_long(out, encoded)
        runnable = np.flatnonzero(~encoded.too_long)
        # Longest first: similar lengths share a batch (little padding), and a batch that
        # does not fit in memory shows up at the start rather than the end.
        order = runnable[np.argsort(-encoded.lengths[runnable], kind="stable")]
        size = self.model.batch_size
        for start in range(0, len(order), size):
            self._run(out, encoded, order[start : start + size])
        return out

    def _run(self, out: Measurements, encoded: EncodedPrompts, rows: np.ndarray) -> None:
        """Score one length-sorted batch; halve it on CUDA out-of-memory."""
        torch = self._torch
        started = time.perf_counter()
        try:
            if self.mode.kind == "logprob":
                self._logprob(out, encoded, rows)
            else:
                self._sample(out, encoded, rows)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(rows) == 1:
                out.error[int(rows[0])] = f"out_of_memory: {encoded.lengths[rows[0]]} tokens"
                return
            logger.warning("out of memory on a batch of %d; halving it", len(rows))
            half = len(rows) // 2
            self._run(out, encoded, rows[:half])
            self._run(out, encoded, rows[half:])
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        out.latency_ms[rows] = elapsed_ms / len(rows)

    def _pad(self, encoded: EncodedPrompts, rows: np.ndarray) -> tuple[Any, Any, Any]:
        """Left-padded input ids, attention mask and position ids for some rows."""
        return left_pad([encoded.token_ids[row] for row in rows], self.pad_id, self.device)

    def last_logits(self, ids: Any, mask: Any, positions: Any) -> Any:
        """Next-token logits at the last position, shape (batch, vocab), float32."""
        torch = self._torch
        with torch.inference_mode():
            if self._keep_arg:
                output = self.lm(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=1,
                    use_cache=False,
                )
                logits = output.logits[:, -1, :]
            else:  # run the body, then the head on the last hidden state only
                body = self.lm.get_decoder()
                hidden = body(
                    input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
                ).last_hidden_state[:, -1, :]
                logits = self.lm.get_output_embeddings()(hidden)
        return logits.float()

    def _logprob(self, out: Measurements, encoded: EncodedPrompts, rows: np.ndarray) -> None:
        torch = self._torch
        logits = self.last_logits(*self._pad(encoded, rows))
        logprobs = torch.log_softmax(logits, dim=-1)
        lp = {
            letter: torch.logsumexp(logprobs[:, list(ids)], dim=-1).double().cpu().numpy()
            for letter, ids in self.letter_ids.items()
        }
        write_letter_logprobs(out, rows, lp["A"], lp["B"])

    def _sample(self, out: Measurements, encoded: EncodedPrompts, rows: np.ndarray) -> None:
        mode = self.mode
        ids, mask, _ = self._pad(encoded, rows)
        greedy = mode.temperature == 0
        # Greedy decoding gives K identical completions: run it once and repeat.
        k = 1 if greedy else mode.k
        sampling: dict[str, Any] = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": mode.temperature, "top_k": 0, "top_p": 1.0}
        )
        with self._torch.inference_mode():
            generated = self.lm.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=mode.max_tokens,
                num_return_sequences=k,
                pad_token_id=self.pad_id,
                **sampling,
            )
        texts = self.tokenizer.batch_decode(
            generated[:, ids.shape[1] :].cpu(), skip_special_tokens=True
        )
        completions = [
            texts[i * k : (i + 1) * k] * (mode.k if greedy else 1) for i in range(len(rows))
        ]
        fill_samples(out, [int(r) for r in rows], completions, mode, self._rng)

    def close(self) -> None:
        torch = self._torch
        self.lm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
