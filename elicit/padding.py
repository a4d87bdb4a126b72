"""Left padding of token sequences into one batch: the single place it is written.

Every forward pass over a batch of prompts (the hf scorer, hidden-state extraction, fine-tuning
toward a target utility) pads on the left, so the last position of every row is that row's own
last token and ``logits[:, -1]`` is its next-token distribution. Position ids come from the
attention mask (0 at each row's first real token), so a padded row sees the same positions as
the same prompt alone.

Needs only numpy here and torch when called (no pydantic, no transformers), so a standalone
benchmark can use the same code as the scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np


def left_pad_arrays(
    token_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded ids, attention mask and position ids as int64 arrays of shape (n, width).

    ``width`` is the longest sequence; padding positions hold ``pad_id``, mask 0 and position 0.

    Raises:
        ValueError: no sequences, or an empty one (a prompt has at least one token).
    """
    lengths = np.fromiter((len(seq) for seq in token_ids), dtype=np.int64, count=len(token_ids))
    if not len(lengths) or lengths.min() == 0:
        raise ValueError(
            f"left_pad: needs at least one non-empty sequence, got lengths {lengths[:8].tolist()}"
        )
    n, width, total = len(lengths), int(lengths.max()), int(lengths.sum())
    flat = np.fromiter(chain.from_iterable(token_ids), dtype=np.int64, count=total)
    offset = width - lengths  # columns of padding before each row's first token
    # within-row index of every token: 0…len-1, laid out row after row
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    ids[np.repeat(np.arange(n), lengths), np.repeat(offset, lengths) + within] = flat
    columns = np.arange(width, dtype=np.int64)[None, :]
    mask = (columns >= offset[:, None]).astype(np.int64)
    positions = np.maximum(columns - offset[:, None], 0)
    return ids, mask, positions


def left_pad(
    token_ids: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu"
) -> tuple[Any, Any, Any]:
    """:func:`left_pad_arrays` as torch ``long`` tensors on ``device``."""
    import torch

    return tuple(  # type: ignore[return-value]
        torch.from_numpy(array).to(device) for array in left_pad_arrays(token_ids, pad_id)
    )
