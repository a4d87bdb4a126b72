"""What the tokenizer-based scorers (``hf``, ``vllm``) share: prompt encoding, letter tokens,
config resolution, and turning model outputs into measurement columns.

**Outcome text is text.** A chat template wraps message contents in control tokens
(``<|im_start|>user``…). An outcome, persona or template wording that contains the *string*
``<|im_end|>`` must not become that control token, or the data could forge a chat turn (close the
user turn, open an assistant turn that already answers "A"). So every special-token string inside
a message's content is tokenized as the characters it is made of, exactly as a chat API treats
content; only the chat template itself (and the spec's ``answer_prefix``, which is written after
the template on purpose, e.g. an empty thinking block) produces control tokens. Prompts whose
contents hold no special-token string take the plain batched tokenizer call, unchanged.

Imports no torch or transformers: a tokenizer object is passed in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ModelNotFoundError, ScorerError
from elicit.models import ModelEntry, lookup
from elicit.parsing import LETTERS, count_letters, counts_to_p, parse_letter, parse_reasoning
from elicit.prompts import PromptTemplate, render, resolve_chat
from elicit.scorers.base import Measurements, QueryBatch

# Private-use characters that stand for a special-token string while the chat template renders
# (``\ue000<k>\ue001``); they are themselves escaped when content holds them.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


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


def control_strings(tokenizer: Any) -> list[str]:
    """The strings a tokenizer turns into special tokens, longest first."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    found = {str(t.content) for t in decoder.values() if getattr(t, "special", False)}
    found.update(str(t) for t in getattr(tokenizer, "all_special_tokens", None) or [])
    return sorted((s for s in found if s), key=lambda s: (-len(s), s))


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
    tokenized without adding more; base-format prompts get the tokenizer's usual BOS. Special-token
    strings inside message contents stay literal text (module docstring).
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
        self.chat = chat
        self.system_role = system_role
        self.max_context = max_context
        self.use_chat = resolve_chat(template, tokenizer, chat)
        self._controls = control_strings(tokenizer)
        escaped = [*self._controls, _OPEN, _CLOSE]
        self._escape_re = re.compile("|".join(re.escape(s) for s in escaped))
        self._escaped = escaped
        self._escape_index = {s: i for i, s in enumerate(escaped)}
        self._control_re = (
            re.compile("|".join(re.escape(s) for s in self._controls)) if self._controls else None
        )
        wording = "".join(filter(None, (template.user, template.system)))
        self._fixed_dirty = self._holds_control(wording)
        self.outcome_texts = outcome_texts

    @property
    def outcome_texts(self) -> Sequence[str]:
        """Outcome texts the query indices point into."""
        return self._outcome_texts

    @outcome_texts.setter
    def outcome_texts(self, texts: Sequence[str]) -> None:
        self._outcome_texts = texts
        self._dirty = np.fromiter(
            (self._holds_control(t) for t in texts), dtype=bool, count=len(texts)
        )

    def _holds_control(self, text: str) -> bool:
        return self._control_re is not None and self._control_re.search(text) is not None

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
        pairs = list(zip(batch.a_idx.tolist(), batch.b_idx.tolist(), strict=True))
        texts = [self.render(a, b) for a, b in pairs]
        token_ids: list[list[int]] = []
        if texts:
            token_ids = self.tokenizer(
                texts,
                add_special_tokens=not self.use_chat,
                padding=False,
                truncation=False,
                # base format: the whole prompt is content, nothing in it is a control token
                split_special_tokens=not self.use_chat,
            )["input_ids"]
        if self.use_chat and len(pairs):
            dirty = self._dirty[batch.a_idx] | self._dirty[batch.b_idx] | self._fixed_dirty
            for row in np.flatnonzero(dirty).tolist():
                token_ids[row] = self.encode_literal(*pairs[row])
        lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
        return EncodedPrompts(texts, token_ids, lengths, lengths > self.max_context)

    def encode_literal(self, a_idx: int, b_idx: int) -> list[int]:
        """Token ids of one chat query with every special-token string of the message contents
        tokenized as text (the same ids as the plain call when the contents hold none)."""
        messages = self.template.messages(
            self.outcome_texts[a_idx], self.outcome_texts[b_idx], system_role=self.system_role
        )
        for message in messages:
            message["content"] = self._escape_re.sub(
                lambda m: f"{_OPEN}{self._escape_index[m.group()]}{_CLOSE}", message["content"]
            )
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **(self.chat_kwargs or {})
        )
        # the answer prefix follows the template on purpose and may hold control tokens
        text += self.template.answer_prefix
        ids: list[int] = []
        start = 0
        # every special-token string left in the rendered text is the template's own
        for match in self._control_re.finditer(text) if self._control_re else ():
            ids += self._text_ids(text[start : match.start()])
            ids.append(int(self.tokenizer.convert_tokens_to_ids(match.group())))
            start = match.end()
        ids += self._text_ids(text[start:])
        return ids

    def _text_ids(self, chunk: str) -> list[int]:
        """Ids of a stretch of rendered text with the escaped strings put back, as plain text."""
        if not chunk:
            return []
        text = _SENTINEL.sub(lambda m: self._escaped[int(m.group(1))], chunk)
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return [int(i) for i in ids["input_ids"]]

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
    from elicit.prompts import accepts_system_role

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
