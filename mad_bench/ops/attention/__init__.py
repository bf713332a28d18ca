"""Causal (optionally windowed) softmax attention (attention and sliding-window-attention).

Torch reference: :mod:`.reference` (``scaled_dot_product_attention``); oracle: :mod:`.naive`;
Triton: :mod:`.triton` (any window, built for MAD's small heads: a short-sequence path for
L <= 256 with one backward program per head, flash-style kernels beyond). ``impl: auto`` runs
the Triton kernel on CUDA for windowed attention (SDPA has no flash path for a window mask, and
its masked backward fails under the engine's vmap in bf16) and on the short path (MAD's lengths
and head widths: the transformer's compiled training step 3.57 ms against 4.76 with SDPA's
flash kernel, which pads 8-wide heads to 32; BENCHMARKS.md). Longer full causal attention stays
on SDPA.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import attention_torch
from .triton import attention_triton, short_path

HAS_TRITON = True

__all__ = ["causal_attention", "HAS_TRITON"]


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None,
                     impl: str = "auto") -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` -> ``[B, H, L, d]``, causal, keys older than ``window - 1``
    positions masked when ``window`` is set."""
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if use_triton(impl, q, auto=window is not None or short_path(q.shape[-2], q.shape[-1])):
        dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
        return attention_triton(q.to(dt), k.to(dt), v.to(dt), window)
    return attention_torch(q, k, v, window)
