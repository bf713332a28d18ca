"""The oracle of causal (optionally windowed) softmax attention: every query's scores over its
keys, written out position by position. Dtype-preserving (fp64 in, fp64 out); slow on purpose."""
from __future__ import annotations

import math

import torch


def naive_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    window: int | None = None) -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` -> ``o [B, H, L, d]``: ``o_t = sum_{s<=t, t-s<window}
    softmax_s(q_t . k_s / sqrt(d)) v_s``."""
    L, d = q.shape[-2], q.shape[-1]
    out = torch.empty_like(q)
    for t in range(L):
        lo = 0 if window is None else max(0, t - window + 1)
        scores = (q[..., t:t + 1, :] @ k[..., lo:t + 1, :].transpose(-1, -2)) / math.sqrt(d)
        out[..., t, :] = (scores.softmax(-1) @ v[..., lo:t + 1, :])[..., 0, :]
    return out
