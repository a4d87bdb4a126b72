"""The transformers scorer: one model on CPU or one CUDA device, batched.

``logprob`` mode runs one forward pass per batch of left-padded prompts, computes logits for the
last position only, and reads the probability of the tokens that spell each letter.
``sample`` and ``reasoning`` modes generate K completions per prompt and parse them.

Prompts are sorted by token length before batching (less padding) and results are put back in
query order. A prompt longer than the context is an error row, never an exception.

The tokenizer helpers here (:func:`letter_token_ids`, :class:`PromptEncoder`,
:func:`fill_samples`) are shared with the vLLM scorer; this module imports torch and
transformers only inside functions.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import MissingDependencyError, ModelNotFoundError, ScorerError
from elicit.models import ModelEntry, is_local, lookup, resolve_model_path
from elicit.parsing import LETTERS, count_letters, counts_to_p, parse_letter, parse_reasoning
from elicit.prompts import PromptTemplate, accepts_system_role, render, resolve_chat
from elicit.scorers.base import Measurements, QueryBatch, Scorer

logger = logging.getLogger(__name__)

#: Separator-free storage of K completions in the ``response`` column: a JSON list of strings.
RESPONSE_FORMAT = "json-list"
#: Context lengths above this in a tokenizer config are placeholders ("no limit"), not facts.
_NO_LIMIT = 10_000_000


# --- tokenizer helpers (shared with the vLLM scorer) ---------------------------------------


def letter_token_ids(tokenizer: Any) -> dict[str, tuple[int, ...]]:
    """Token ids whose text spells each answer letter.

    For each of ``A`` and ``B``: the single-token encodings of the letter with and without a
    leading space, plus every non-special vocabulary token that decodes to exactly ``"A"`` or
    ``" A"`` (SentencePiece ``▁A``, byte-level ``ĠA``, byte-fallback ``<0x41>``…).

    Returns:
        ``{"A": (ids…), "B": (ids…)}``, sorted ids, never empty for a usable tokenizer.

    Raises:
        ScorerError: a letter has no single-token spelling (the logprob mode cannot work).
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab_size = len(tokenizer)
    spellings = {letter: {letter, f" {letter}"} for letter in LETTERS}
    found: dict[str, set[int]] = {letter: set() for letter in LETTERS}
    for letter in LETTERS:
        for text in spellings[letter]:
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) == 1:
                found[letter].add(int(ids[0]))
    # Decoding the whole vocabulary once finds the spellings encode() does not produce
    # (e.g. "A" after a space-prefixing normaliser); ~0.1 s per 50k tokens.
    decoded = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    for token_id, text in enumerate(decoded):
        if token_id in special:
            continue
        for letter in LETTERS:
            if text in spellings[letter]:
                found[letter].add(token_id)
    missing = [letter for letter in LETTERS if not found[letter]]
    if missing:
        raise ScorerError(
            f"tokenizer {type(tokenizer).__name__} has no single token for {missing}; "
            "logprob mode needs one per letter, use mode sample instead"
        )
    overlap = found["A"] & found["B"]
    if overlap:
        raise ScorerError(f"tokens {sorted(overlap)} decode to both letters; check the tokenizer")
    return {letter: tuple(sorted(ids)) for letter, ids in found.items()}


@dataclass
class EncodedPrompts:
    """Rendered and tokenized prompts of one batch, in query order."""

    texts: list[str]
    token_ids: list[list[int]]
    lengths: np.ndarray
    """Prompt lengths in tokens, shape (n,)."""
    too_long: np.ndarray
    """True where a prompt exceeds the context; those rows are errors and are not run."""


class PromptEncoder:
    """Renders queries with a tokenizer's chat template and tokenizes them.

    Chat-template output already holds the special tokens (BOS, role markers), so it is
    tokenized without adding more; base-format prompts get the tokenizer's usual BOS.
    """

    def __init__(
        self,
        tokenizer: Any,
        template: PromptTemplate,
        outcome_texts: Sequence[str],
        *,
        chat: bool | None,
        system_role: bool,
        max_context: int,
        chat_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.chat_kwargs = chat_kwargs
        self.template = template
        self.outcome_texts = outcome_texts
        self.chat = chat
        self.system_role = system_role
        self.max_context = max_context
        self.use_chat = resolve_chat(template, tokenizer, chat)

    def render(self, a_idx: int, b_idx: int) -> str:
        """Model input text for one query."""
        return render(
            self.template,
            self.outcome_texts[a_idx],
            self.outcome_texts[b_idx],
            tokenizer=self.tokenizer,
            chat=self.use_chat,
            system_role=self.system_role,
            chat_kwargs=self.chat_kwargs,
        )

    def encode(self, batch: QueryBatch) -> EncodedPrompts:
        """Render and tokenize every query of a batch."""
        texts = [self.render(int(a), int(b)) for a, b in zip(batch.a_idx, batch.b_idx, strict=True)]
        if texts:
            token_ids = self.tokenizer(
                texts, add_special_tokens=not self.use_chat, padding=False, truncation=False
            )["input_ids"]
        else:
            token_ids = []
        lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
        return EncodedPrompts(texts, token_ids, lengths, lengths > self.max_context)

    def mark_too_long(self, out: Measurements, encoded: EncodedPrompts) -> None:
        """Write the ``prompt_too_long`` error rows."""
        for i in np.flatnonzero(encoded.too_long):
            out.error[i] = f"prompt_too_long: {encoded.lengths[i]} tokens > {self.max_context}"


def registry_entry(model: ModelConfig) -> ModelEntry | None:
    """The registry entry of a model config, or None for an unregistered label."""
    try:
        return lookup(model.name)
    except ModelNotFoundError:
        return None


def resolve_system_role(model: ModelConfig, entry: ModelEntry | None, tokenizer: Any) -> bool:
    """Config, then registry, then a probe of the chat template."""
    if model.system_role is not None:
        return model.system_role
    if entry is not None and entry.system_role is not None:
        return entry.system_role
    return accepts_system_role(tokenizer)


def resolve_chat_kwargs(
    model: ModelConfig, entry: ModelEntry | None, mode: ModeConfig
) -> dict[str, Any] | None:
    """Config, then registry (outside ``reasoning`` mode, where the model should think)."""
    if model.chat_template_kwargs is not None:
        return dict(model.chat_template_kwargs)
    if entry is not None and entry.chat_template_kwargs and mode.kind != "reasoning":
        return dict(entry.chat_template_kwargs)
    return None


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


def fill_samples(
    out: Measurements,
    rows: Sequence[int],
    completions: Sequence[Sequence[str]],
    mode: ModeConfig,
    rng: np.random.Generator,
) -> None:
    """Parse K completions per row into counts, P(A) under the unparseable policy, and the
    ``response`` column (a JSON list of the completions)."""
    parse = parse_reasoning if mode.kind == "reasoning" else parse_letter
    assert out.n_a is not None and out.n_b is not None and out.n_unparsed is not None
    assert out.response is not None
    for row, texts in zip(rows, completions, strict=True):
        n_a, n_b, n_u = count_letters(parse(text) for text in texts)
        out.n_a[row], out.n_b[row], out.n_unparsed[row] = n_a, n_b, n_u
        out.response[row] = json.dumps(list(texts), ensure_ascii=False)
    idx = np.asarray(rows, dtype=np.int64)
    if len(idx):
        p = counts_to_p(out.n_a[idx], out.n_b[idx], out.n_unparsed[idx], mode.unparseable, rng)
        out.p_a[idx] = p
        out.p_b[idx] = 1.0 - p


def empty_measurements(n: int, mode: ModeConfig) -> Measurements:
    """All-NaN measurements, with count and response columns in sampling modes."""
    out = Measurements.empty(n)
    if mode.kind != "logprob":
        out.n_a = np.zeros(n, dtype=np.int64)
        out.n_b = np.zeros(n, dtype=np.int64)
        out.n_unparsed = np.zeros(n, dtype=np.int64)
        out.response = [None] * n
    return out


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
        torch = self._torch
        width = int(encoded.lengths[rows].max())
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            seq = encoded.token_ids[row]
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

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


def write_letter_logprobs(
    out: Measurements, rows: np.ndarray, lp_a: np.ndarray, lp_b: np.ndarray
) -> None:
    """Fill p_a, p_b, lp_a, lp_b and mass from per-letter log-probabilities (natural log of
    the summed probability of each letter's tokens; -inf when absent)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = np.exp(lp_a), np.exp(lp_b)
        mass = pa + pb
        # renormalise in log space so two tiny probabilities still give a finite ratio
        top = np.maximum(lp_a, lp_b)
        p_a = np.where(np.isfinite(top), 1.0 / (1.0 + np.exp(lp_b - lp_a)), math.nan)
    out.p_a[rows] = p_a
    out.p_b[rows] = 1.0 - p_a
    out.lp_a[rows] = lp_a
    out.lp_b[rows] = lp_b
    out.mass[rows] = mass
