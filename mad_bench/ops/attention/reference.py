"""Causal (optionally windowed) softmax attention in torch: ``scaled_dot_product_attention``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    window: int | None = None) -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` -> ``[B, H, L, d]``."""
    if window is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    L = q.shape[-2]
    t = torch.arange(L, device=q.device)
    mask = (t[None, :] <= t[:, None]) & (t[:, None] - t[None, :] < window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
