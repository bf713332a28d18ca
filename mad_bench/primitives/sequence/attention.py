"""Multi-head causal softmax attention (Vaswani et al., 2017, "Attention Is All You Need").

    q, k, v = x W_q, x W_k, x W_v            (per head h, head dim d_h = d_model / n_heads)
    q, k    = RoPE(q), RoPE(k)                (Su et al., 2021; on the first ``rotary_dim`` dims)
    o_t     = sum_{s <= t, t - s < window} softmax_s(q_t . k_s / sqrt(d_h)) v_s
    y       = concat_h(o) W_o

With ``bias`` (the default, as MAD-Lab's flash-attn ``MHA``) the qkv and out projections add a
bias (zero at init: the model's initialisation zeroes Linear biases).

The parallel form runs on :mod:`mad_bench.ops.attention` (``scaled_dot_product_attention``; a
Triton kernel for windowed attention on CUDA); ``step`` keeps a KV cache.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...configs.primitives.attention import AttentionConfig
from ...ops import attention as attention_ops
from ...ops.attention import causal_attention
from ..base import SequenceMixer
from ..registry import register


def rotary_tables(max_len: int, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of the first ``2 * cos.shape[-1]`` dims of ``x[..., L, d]``."""
    r = cos.shape[-1] * 2
    if r == 0:
        return x
    rot, rest = x[..., :r], x[..., r:]
    x1, x2 = rot[..., 0::2], rot[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return torch.cat((out, rest), dim=-1)


@register(AttentionConfig)
class Attention(SequenceMixer):
    """Causal multi-head softmax attention with rotary embeddings and an optional window."""
    ops = (attention_ops,)

    def __init__(self, cfg: AttentionConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        self.n_heads = cfg.n_heads
        self.head_dim = d_model // cfg.n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=cfg.bias)
        self.out = nn.Linear(d_model, d_model, bias=cfg.bias)
        cos, sin = rotary_tables(max_len, cfg.rotary_dim, cfg.rotary_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [B, H, L, d_h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self._heads(x)
        q = apply_rotary(q, self.cos[:L], self.sin[:L])
        k = apply_rotary(k, self.cos[:L], self.sin[:L])
        o = causal_attention(q, k, v, self.cfg.window, self.cfg.impl)
        return self.out(o.transpose(1, 2).reshape(B, L, D))

    def init_state(self, batch_size: int, device=None, dtype=None):
        cache_len = self.max_len if self.cfg.window is None else min(self.cfg.window, self.max_len)
        shape = (batch_size, self.n_heads, cache_len, self.head_dim)
        zeros = lambda: torch.zeros(shape, **self.state_kind(device, dtype))  # noqa: E731
        return {"k": zeros(), "v": zeros(), "pos": 0}

    def step(self, x_t: torch.Tensor, state):
        pos = state["pos"]
        if pos >= self.max_len:
            raise ValueError(f"attention step beyond max_len={self.max_len}")
        q, k, v = self._heads(x_t[:, None])  # [B, H, 1, d_h]
        cos, sin = self.cos[pos : pos + 1], self.sin[pos : pos + 1]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        cache_len = state["k"].shape[2]
        if self.cfg.window is None:
            slot = pos
        else:  # ring buffer of the last `window` keys; softmax ignores their order
            slot = pos % cache_len
        k_cache = state["k"].clone()
        v_cache = state["v"].clone()
        k_cache[:, :, slot] = k[:, :, 0].to(k_cache.dtype)
        v_cache[:, :, slot] = v[:, :, 0].to(v_cache.dtype)
        n = min(pos + 1, cache_len)
        scores = (q @ k_cache[:, :, :n].transpose(-1, -2).to(q.dtype)) / math.sqrt(self.head_dim)
        o = scores.softmax(-1) @ v_cache[:, :, :n].to(q.dtype)  # [B, H, 1, d_h]
        y = self.out(o[:, :, 0].reshape(x_t.shape[0], self.d_model))
        return y, {"k": k_cache, "v": v_cache, "pos": pos + 1}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        context = seq_len / 2 if self.cfg.window is None else min(self.cfg.window, seq_len / 2)
        return 4.0 * context * self.d_model  # q.k and p.v over the average causal context
