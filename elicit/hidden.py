"""Hidden states of outcome texts, for representation probes, and their cache in the store.

The model is loaded exactly as the ``hf`` scorer loads it (:class:`elicit.scorers.hf.HFScorer`:
registry, packaged-model conversion, tokenizer, chat-template and system-role handling, device
and dtype — ``auto`` is float32 on CPU, bfloat16 on a GPU). Each outcome becomes one input:

- ``prompt`` (default): the outcome inside a short fixed user message,
  :data:`PROBE_PROMPT`, rendered the way the run renders its questions (the run's system
  message and chat-template variables, the tokenizer's chat template with the assistant turn
  opened, or plain text for base models). The last token is then where the model would start its answer, which is where the
  forced-choice questions read the model out.
- ``raw``: the outcome text alone (the tokenizer's usual special tokens); the last token is the
  sentence's last token.

From each input the residual-stream vector at the **last token** is kept for the requested
layers. Layer numbering follows transformers' ``hidden_states``: 0 = the token embeddings,
``l`` = the output of transformer block ``l`` (1…L); the vector of the last block L is taken
after the model's final norm (that is what transformers returns there). Vectors are stored as
float32 whatever the model's dtype.

Cache: one Parquet file per (run, model, context, layer),
``<root>/runs/<run_id>/hidden/model=<model>/<context>/layer=<LLL>.parquet``, columns
``outcome_id`` and ``vector`` (fixed-size list of float32), written atomically through
:class:`storage.fs.Root` (local folder or ``s3://``). The file's metadata records the model,
layer, number of blocks and hidden size, so a later call can tell which layers exist without
loading the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from elicit.config import ModeConfig, ModelConfig
from elicit.errors import ElicitError, ScorerError
from elicit.padding import left_pad
from elicit.prompts import PromptTemplate, chat_messages, resolve_chat
from storage import Root, RunLayout

logger = logging.getLogger(__name__)

HiddenContext = Literal["prompt", "raw"]
CONTEXTS: tuple[HiddenContext, ...] = ("prompt", "raw")

PROBE_PROMPT = "Consider the following possible state of the world:\n\n{outcome}"
"""User message of the ``prompt`` context (valuescope's own wording; fixed, so cached vectors
stay valid)."""

#: Bump when the extraction itself changes (input wording, token position…): older cache
#: files are then recomputed rather than silently mixed with new ones.
EXTRACTION_VERSION = 1


class HiddenStateError(ElicitError):
    """Hidden states cannot be had: the model has none we can load, or a layer is missing."""


def check_probeable(model: ModelConfig) -> None:
    """Fail unless the model's weights can be loaded with transformers.

    ``hf`` and ``vllm`` models are transformers checkpoints (vLLM loads the same folders);
    the ``simulated`` agent has no network, and an ``openai`` endpoint returns text or
    log-probabilities only.

    Raises:
        HiddenStateError: naming the model, its scorer and what to do.
    """
    kind = model.scorer_kind
    if kind == "simulated":
        raise HiddenStateError(
            f"model {model.name!r} is the simulated agent: it has no hidden states to probe; "
            "probe a run of a real model (scorer hf or vllm), e.g. --model smollm2-135m"
        )
    if kind == "openai":
        raise HiddenStateError(
            f"model {model.name!r} was asked through an OpenAI-compatible endpoint "
            f"({model.base_url}), which returns no hidden states; probe a run that loads the "
            "weights itself (scorer hf or vllm)"
        )


def load_scorer(model: ModelConfig, template: PromptTemplate, mode: ModeConfig) -> Any:
    """The run's model, loaded the way the hf scorer loads it (weights, tokenizer, device).

    Module-level so that a test can count the loads.
    """
    from elicit.scorers.hf import HFScorer

    # sample mode skips the letter-token scan, which probes do not need; other modes are kept
    # so that chat-template variables resolve as in the run (they depend on the mode)
    if mode.kind == "logprob":
        mode = mode.model_copy(update={"kind": "sample"})
    return HFScorer(model, mode, template, [])


def model_layers(model: ModelConfig) -> int:
    """Number of transformer blocks L of a model, read from its config (no weights loaded)."""
    from elicit.models import is_local, resolve_model_path
    from elicit.scorers.hf import _import_torch

    _, transformers = _import_torch()
    path = resolve_model_path(model)
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=is_local(path))
    except OSError as exc:
        raise ScorerError(
            f"model {model.name!r}: cannot read the config of {path!r}: {exc}"
        ) from exc
    layers = getattr(text_config(config), "num_hidden_layers", None)
    if not isinstance(layers, int):
        raise HiddenStateError(
            f"model {model.name!r}: its config ({type(config).__name__}) has no "
            "num_hidden_layers; probes need a decoder-only transformer"
        )
    return layers


def text_config(config: Any) -> Any:
    """The language-model part of a (possibly multimodal) transformers config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def choose_layers(n_layers: int, every: int | None, layers: Sequence[int] | None) -> list[int]:
    """Layers to probe: the given ones, else every ``every``-th from 0 plus the last block.

    Args:
        n_layers: transformer blocks L (valid layers are 0…L).
        every: stride; None picks about eight layers (``max(1, L // 8)``).
        layers: explicit layer indices (negative ones count from the end: -1 = L).

    Raises:
        HiddenStateError: a layer outside 0…L, naming the valid range.
    """
    if layers:
        resolved = [n_layers + 1 + layer if layer < 0 else layer for layer in layers]
        bad = [given for given, r in zip(layers, resolved, strict=True) if not 0 <= r <= n_layers]
        if bad:
            raise HiddenStateError(
                f"layer(s) {bad} do not exist: the model has layers 0…{n_layers} "
                f"(0 = embeddings, 1…{n_layers} = transformer blocks; -1 = the last)"
            )
        return sorted(set(resolved))
    step = every if every is not None else max(1, n_layers // 8)
    if step < 1:
        raise HiddenStateError(f"--every must be at least 1, got {step}")
    return sorted(set(range(0, n_layers + 1, step)) | {n_layers})


def render_inputs(scorer: Any, texts: Sequence[str], context: HiddenContext) -> list[str]:
    """Model input text for each outcome (see the module docstring)."""
    if context == "raw":
        return list(texts)
    if context != "prompt":
        raise HiddenStateError(f"context {context!r} is unknown; use one of {CONTEXTS}")
    template: PromptTemplate = scorer.template
    tokenizer = scorer.tokenizer
    use_chat = resolve_chat(template, tokenizer, scorer.encoder.chat)
    system = template.system
    out = []
    for text in texts:
        user = PROBE_PROMPT.format(outcome=text)
        if not use_chat:
            out.append(f"{system}\n\n{user}" if system else user)
            continue
        out.append(
            tokenizer.apply_chat_template(
                chat_messages(system, user, scorer.encoder.system_role),
                tokenize=False,
                add_generation_prompt=True,
                **(scorer.encoder.chat_kwargs or {}),
            )
        )
    return out


@dataclass
class Extraction:
    """Vectors of some layers for a list of outcomes."""

    vectors: dict[int, np.ndarray]
    """Layer → float32 array of shape (N, D), rows in the order of the texts given."""
    n_layers: int
    """Transformer blocks L of the model."""
    seconds: float
    """Wall time of the forward passes (model loading excluded)."""


def extract(
    scorer: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    context: HiddenContext = "prompt",
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Extraction:
    """Last-token hidden states of each text at each requested layer.

    Inputs are sorted by length and left-padded (as the hf scorer does), so the last position
    of every row is its own last token.

    Args:
        scorer: a loaded :class:`elicit.scorers.hf.HFScorer` (see :func:`load_scorer`).
        texts: outcome texts.
        layers: layer indices, 0…L.
        context: ``prompt`` or ``raw`` (module docstring).
        batch_size: inputs per forward pass (default: the model config's ``batch_size``).
        on_batch: called with the number of inputs after each batch (progress).
    """
    torch = scorer._torch
    config = text_config(scorer.lm.config)
    n_layers = int(config.num_hidden_layers)
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise HiddenStateError(f"layer(s) {bad} do not exist: the model has layers 0…{n_layers}")
    inputs = render_inputs(scorer, texts, context)
    use_chat = context == "prompt" and resolve_chat(
        scorer.template, scorer.tokenizer, scorer.encoder.chat
    )
    token_ids = (
        scorer.tokenizer(inputs, add_special_tokens=not use_chat, padding=False)["input_ids"]
        if inputs
        else []
    )
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    too_long = np.flatnonzero(lengths > scorer.max_context)
    if len(too_long):
        i = int(too_long[0])
        raise HiddenStateError(
            f"outcome {i} is {lengths[i]} tokens long, more than the model's context "
            f"({scorer.max_context}); shorten it or raise max_context"
        )
    dim = int(config.hidden_size)
    keep = {"logits_to_keep": 1} if scorer._keep_arg else {}
    out = {layer: np.zeros((len(texts), dim), dtype=np.float32) for layer in layers}
    order = np.argsort(-lengths, kind="stable")
    size = batch_size or scorer.model.batch_size
    started = time.perf_counter()
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        ids, mask, positions = left_pad(
            [token_ids[row] for row in rows], scorer.pad_id, scorer.device
        )
        with torch.inference_mode():
            result = scorer.lm(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                output_hidden_states=True,
                use_cache=False,
                **keep,
            )
        for layer in layers:
            out[layer][rows] = result.hidden_states[layer][:, -1, :].float().cpu().numpy()
        if on_batch is not None:
            on_batch(len(rows))
    return Extraction(out, n_layers, time.perf_counter() - started)


# --- cache ------------------------------------------------------------------------------------


def write_layer(
    root: Root,
    path: str,
    outcome_ids: Sequence[str],
    vectors: np.ndarray,
    meta: dict[str, Any],
) -> None:
    """Store one layer's vectors atomically as Parquet (``outcome_id``, ``vector``)."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    table = pa.table(
        {
            "outcome_id": pa.array(list(outcome_ids), type=pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    ).replace_schema_metadata(
        {"valuescope.table": "hidden_states", "valuescope.hidden": json.dumps(meta)}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    root.write_atomic(path, sink.getvalue())
    logger.debug("cached %d × %d vectors at %s", n, dim, root.display(path))


def layer_meta(root: Root, path: str) -> dict[str, Any]:
    """The metadata of a cached layer file (reads the footer only)."""
    schema = pq.read_schema(path, filesystem=root.fs)
    raw = (schema.metadata or {}).get(b"valuescope.hidden", b"{}")
    meta: dict[str, Any] = json.loads(raw)
    return meta


def read_layer(root: Root, path: str, outcome_ids: Sequence[str]) -> np.ndarray | None:
    """Cached vectors of ``outcome_ids`` in that order, or None when the file lacks one of them
    or was written by another extraction version (the caller recomputes it)."""
    table = pq.read_table(path, filesystem=root.fs)
    meta = json.loads((table.schema.metadata or {}).get(b"valuescope.hidden", b"{}"))
    if meta.get("extraction_version") != EXTRACTION_VERSION:
        return None
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), dim)
    index = {oid: k for k, oid in enumerate(table.column("outcome_id").to_pylist())}
    if any(oid not in index for oid in outcome_ids):
        return None
    rows = np.array([index[oid] for oid in outcome_ids], dtype=np.int64)
    return np.asarray(matrix[rows], dtype=np.float32)


def cached_layers(root: Root, layout: RunLayout, model: str, context: str) -> dict[int, str]:
    """Layer → file of the layers cached for a model and context."""
    found: dict[int, str] = {}
    for path in root.list_files(layout.hidden_dir(model, context), ".parquet"):
        name = path.rsplit("/", 1)[1]
        if name.startswith("layer=") and name[6:-8].isdigit():
            found[int(name[6:-8])] = path
    return found
