"""Supervised fine-tuning toward target preferences (the training half of ``valuescope control``).

A training example is one oriented prompt exactly as the hf scorer renders it (same template,
chat formatting and tokenizer, through the scorer's :class:`~elicit.scorers.hf.PromptEncoder`)
with a soft label t = target P(shown-first ≻ shown-second). The model's answer is what the
logprob scorer reads: the next-token distribution at the answer position, summed over the tokens
that spell each letter and renormalised over the two,

    q = P(A) / (P(A) + P(B)),

and the loss is the binary cross-entropy −[t log q + (1 − t) log(1 − q)], averaged over a batch.
Both orientations of every training pair are examples, and they always share a batch, so a
model cannot lower the loss by moving its position bias alone. Probability mass outside the two letters is left free.

Methods: ``lora`` adds rank-r adapters to every linear layer of the transformer (``peft``) and
merges them into the weights when done; ``full`` updates every weight except the token
embedding, which small models tie to the output head (freezing it keeps the rest of the
vocabulary as it was and halves the optimiser's memory for a model like SmolLM2-135M). AdamW,
a fixed number of epochs over the examples in a seeded random order.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cluster.errors import ControlError
from cluster.execution.progress import Progress, Style
from elicit.padding import left_pad

if TYPE_CHECKING:
    from elicit.scorers.hf import HFScorer

logger = logging.getLogger(__name__)

Method = Literal["lora", "full"]
#: Models up to this many parameters are fully fine-tuned by default; larger ones get LoRA.
FULL_MAX_PARAMS = 1_000_000_000
#: Stamp written into a tuned model folder: how it was made.
STAMP = "valuescope-control.json"


@dataclass(frozen=True)
class TrainSettings:
    """How the model is fine-tuned."""

    method: Method = "full"
    """``lora`` (adapters on every linear layer, merged at the end) or ``full``."""
    epochs: int = 3
    """Passes over the training examples (both orientations of every training pair)."""
    lr: float = 1e-4
    """AdamW learning rate."""
    batch_size: int = 8
    """Examples per optimiser step (both orientations of a pair always share a step, so a
    batch can hold one more)."""
    lora_rank: int = 8
    """LoRA rank r (``lora`` only); alpha is 2r."""
    layers: int | None = None
    """Train only the last this-many transformer blocks (and the final norm); None = all.
    Backpropagation then stops at the lowest trained block, which makes a step several times
    cheaper on a CPU."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the example order and the adapter initialisation."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 1, got {value}"
            for name, value in (
                ("epochs", self.epochs),
                ("batch_size", self.batch_size),
                ("lora_rank", self.lora_rank),
            )
            if value < 1
        ]
        if self.layers is not None and self.layers < 1:
            problems.append(f"layers must be >= 1 (or None for all), got {self.layers}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.method not in ("lora", "full"):
            problems.append(f"method must be lora or full, got {self.method!r}")
        if problems:
            raise ControlError("fine-tuning settings: " + "; ".join(problems))


@dataclass
class TrainReport:
    """What a fine-tuning run did."""

    method: str
    steps: int
    examples: int
    trainable_params: int
    total_params: int
    seconds: float
    epoch_loss: list[float] = field(default_factory=list)
    """Mean training loss of each epoch (the loss of the weights as they were during it)."""
    adapter_norm: float | None = None
    """LoRA only: Frobenius norm of all adapter B matrices before they are merged. They start at
    zero, so 0 means training never moved the adapters; None for full fine-tuning."""


def default_lr(method: Method) -> float:
    """Default AdamW learning rate: 1e-4 for full fine-tuning (measured on SmolLM2-135M, see
    docs/control.md; 5e-4 was unstable there), 5e-4 for LoRA adapters."""
    return 1e-4 if method == "full" else 5e-4


def pick_method(n_params: int) -> Method:
    """``full`` for models up to :data:`FULL_MAX_PARAMS` parameters, else ``lora``."""
    return "full" if n_params <= FULL_MAX_PARAMS else "lora"


def soft_label_loss(logits: Any, letter_ids: dict[str, tuple[int, ...]], target_a: Any) -> Any:
    """Mean binary cross-entropy between ``target_a`` and the renormalised P(A).

    Args:
        logits: next-token logits at the answer position, shape (batch, vocab).
        letter_ids: token ids that spell ``A`` and ``B`` (:func:`elicit.scorers.hf.letter_token_ids`).
        target_a: target P(A) per example, shape (batch,), in [0, 1].

    Returns:
        A scalar tensor.
    """
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    lp_a = torch.logsumexp(logprobs[:, list(letter_ids["A"])], dim=-1)
    lp_b = torch.logsumexp(logprobs[:, list(letter_ids["B"])], dim=-1)
    norm = torch.logaddexp(lp_a, lp_b)
    log_q, log_not_q = lp_a - norm, lp_b - norm
    t = target_a.to(log_q.dtype)
    return -(t * log_q + (1.0 - t) * log_not_q).mean()


def _blocks(lm: Any) -> Any:
    """The model's list of transformer blocks."""
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else None
    blocks = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    if blocks is None:
        raise ControlError(
            f"{type(lm).__name__}: cannot find its transformer blocks to train only the last "
            "few; leave layers unset to train them all"
        )
    return blocks


def _prepare(lm: Any, settings: TrainSettings, device: str) -> Any:
    """The model to train: LoRA-wrapped, or fp32 with the token embedding frozen (and, with
    ``layers``, every block below the last ``layers`` frozen too)."""
    import torch

    first = 0
    if settings.layers is not None:
        n_blocks = len(_blocks(lm))
        first = max(0, n_blocks - settings.layers)
    if settings.method == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise ControlError(f"LoRA needs the peft package ({exc}); pip install peft") from exc
        torch.manual_seed(settings.seed)
        targets: str | list[str] = "all-linear"
        only: list[int] | None = None
        if settings.layers is not None:
            # peft takes a layer subset only with named modules: the blocks' linear layers
            blocks = _blocks(lm)
            targets = sorted(
                {
                    name.rsplit(".", 1)[-1]
                    for name, module in blocks.named_modules()
                    if isinstance(module, torch.nn.Linear)
                }
            )
            only = list(range(first, len(blocks)))
        config = LoraConfig(
            r=settings.lora_rank,
            lora_alpha=2 * settings.lora_rank,
            lora_dropout=0.0,
            target_modules=targets,
            task_type="CAUSAL_LM",
            layers_to_transform=only,
        )
        return get_peft_model(lm, config)
    if next(lm.parameters()).dtype != torch.float32:
        lm = lm.float()  # AdamW updates in bf16 lose most small steps
    frozen = {id(p) for p in lm.get_input_embeddings().parameters()}
    if first > 0:
        for block in list(_blocks(lm))[:first]:
            frozen.update(id(p) for p in block.parameters())
    for p in lm.parameters():
        p.requires_grad_(id(p) not in frozen)
    return lm.to(device)


def _forward_logits(lm: Any, ids: Any, mask: Any, positions: Any, keep_arg: bool) -> Any:
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
        "use_cache": False,
    }
    if keep_arg:
        kwargs["logits_to_keep"] = 1
    return lm(**kwargs).logits[:, -1, :]


def finetune(
    scorer: HFScorer,
    a_idx: np.ndarray,
    b_idx: np.ndarray,
    target_a: np.ndarray,
    settings: TrainSettings,
    *,
    progress: Style = "auto",
) -> TrainReport:
    """Fine-tune the scorer's model in place so that its P(A) on the oriented prompts
    (``a_idx`` shown first, ``b_idx`` second) approaches ``target_a``.

    Afterwards ``scorer.lm`` holds the tuned weights (LoRA adapters merged), in eval mode, so the
    same scorer measures the tuned model.

    Raises:
        ControlError: no examples, a prompt longer than the model's context, or a target outside
            [0, 1].
    """
    import torch

    from elicit.scorers.base import QueryBatch

    a_idx, b_idx = np.asarray(a_idx, np.int64), np.asarray(b_idx, np.int64)
    target = np.asarray(target_a, np.float64)
    if len(a_idx) == 0:
        raise ControlError("fine-tuning: no training examples (the target has no training pair)")
    if not np.all((target >= 0) & (target <= 1)):
        raise ControlError("fine-tuning: target probabilities must lie in [0, 1]")
    encoded = scorer.encoder.encode(QueryBatch(np.arange(len(a_idx)), a_idx, b_idx))
    if encoded.too_long.any():
        k = int(np.flatnonzero(encoded.too_long)[0])
        raise ControlError(
            f"fine-tuning: prompt {k} has {encoded.lengths[k]} tokens, more than the model's "
            f"context of {scorer.max_context}; use shorter outcomes"
        )
    started = time.perf_counter()
    keep_arg = "logits_to_keep" in inspect.signature(scorer.lm.forward).parameters
    lm = _prepare(scorer.lm, settings, scorer.device)
    lm.train()
    params = [p for p in lm.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    letters = scorer.letter_ids or _letters(scorer)
    rng = np.random.default_rng(settings.seed)
    n = len(a_idx)
    pair_key = np.minimum(a_idx, b_idx) * (int(max(a_idx.max(), b_idx.max())) + 1) + np.maximum(
        a_idx, b_idx
    )
    per_epoch = len(_batches(pair_key, settings.batch_size, np.random.default_rng(0)))
    report = TrainReport(
        method=settings.method,
        steps=0,
        examples=n,
        trainable_params=int(sum(p.numel() for p in params)),
        total_params=int(sum(p.numel() for p in lm.parameters())),
        seconds=0.0,
    )
    logger.info(
        "fine-tuning (%s): %d examples, %d epochs, %d trainable of %d parameters",
        settings.method,
        n,
        settings.epochs,
        report.trainable_params,
        report.total_params,
    )
    with Progress(
        f"fine-tuning ({settings.method})", settings.epochs * per_epoch, progress, unit="steps"
    ) as bar:
        for _epoch in range(settings.epochs):
            losses = []
            for rows in _batches(pair_key, settings.batch_size, rng):
                ids, mask, positions = left_pad(
                    [encoded.token_ids[int(r)] for r in rows], scorer.pad_id, scorer.device
                )
                logits = _forward_logits(lm, ids, mask, positions, keep_arg)
                loss = soft_label_loss(
                    logits, letters, torch.tensor(target[rows], device=logits.device)
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()) * len(rows))
                report.steps += 1
                bar.advance(1, note=f"loss {float(loss.detach()):.4f}")
            report.epoch_loss.append(sum(losses) / n)
    if settings.method == "lora":
        report.adapter_norm = _adapter_norm(lm)
        lm = lm.merge_and_unload()
    for p in lm.parameters():
        p.requires_grad_(False)
    scorer.lm = lm.eval()
    report.seconds = time.perf_counter() - started
    return report


def _adapter_norm(lm: Any) -> float:
    """√(Σ ‖B‖²) over the LoRA B matrices of a peft model (zero at initialisation)."""
    import torch

    with torch.no_grad():
        total = sum(
            float(p.detach().float().pow(2).sum())
            for name, p in lm.named_parameters()
            if "lora_B" in name
        )
    return float(np.sqrt(total))


def _batches(pair_key: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Example indices per batch, pairs in a random order, both orientations of a pair always in
    the same batch (a batch then rewards content, not a shift towards one letter); a batch
    closes once it holds at least ``size`` examples."""
    keys, inverse, counts = np.unique(pair_key, return_inverse=True, return_counts=True)
    # one stable sort groups each pair's examples (a scan per pair would be quadratic)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    count = 0
    for k in rng.permutation(len(keys)):
        current.append(members[k])
        count += len(members[k])
        if count >= size:
            batches.append(np.concatenate(current))
            current, count = [], 0
    if current:
        batches.append(np.concatenate(current))
    return batches


def _letters(scorer: HFScorer) -> dict[str, tuple[int, ...]]:
    from elicit.scorers.hf import letter_token_ids

    return letter_token_ids(scorer.tokenizer)


def save_model(scorer: HFScorer, out: str | Path, stamp: dict[str, Any]) -> Path:
    """Write the scorer's (tuned) model and tokenizer as a safetensors folder the hf scorer can
    load as a local model path. Written beside ``out`` and renamed into place when complete."""
    target = Path(out).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        scorer.lm.save_pretrained(tmp, safe_serialization=True)
        scorer.tokenizer.save_pretrained(tmp)
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2, default=str), encoding="utf-8")
        tmp.chmod(0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, old / "old")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return asdict(settings)
