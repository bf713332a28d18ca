"""Causal (optionally windowed) softmax attention (attention and sliding-window-attention).

Torch reference: :mod:`.reference` (``scaled_dot_product_attention``); oracle: :mod:`.naive`;
Triton: :mod:`.triton` (small heads, flash-style forward and backward). ``impl: auto`` runs the
Triton kernel on CUDA for heads of at most ``TRITON_MAX_HEAD_DIM`` dims, where flash-attention
pads the head to 32 (figures: BENCHMARKS.md); ``torch`` elsewhere.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import attention_torch
from .triton import attention_triton

HAS_TRITON = True
TRITON_MAX_HEAD_DIM = 16

__all__ = ["causal_attention", "HAS_TRITON"]


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None,
                     impl: str = "auto") -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` -> ``[B, H, L, d]``, causal, keys older than ``window - 1``
    positions masked when ``window`` is set."""
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if use_triton(impl, q, auto=q.shape[-1] <= TRITON_MAX_HEAD_DIM):
        dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
        return attention_triton(q.to(dt), k.to(dt), v.to(dt), window)
    return attention_torch(q, k, v, window)
