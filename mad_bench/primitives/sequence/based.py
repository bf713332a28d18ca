"""Based linear attention (Arora et al., 2024, "Simple linear attention language models balance
the recall-throughput tradeoff"), as in Zoology's ``zoology/mixers/based.py``.

    q, k   = x W_q, x W_k                       (per head: ``feature_dim`` wide)
    v      = x W_v                              (per head: d_model / n_heads wide)
    phi(z) = [1, z / d^(1/4), vec(z z^T) / (sqrt(2) sqrt(d))]       (d = feature_dim; sec. 4.1)
             so that phi(q) . phi(k) = 1 + q.k / sqrt(d) + (q.k)^2 / (2 d), the 2nd-order Taylor
             expansion of exp(q.k / sqrt(d))
    o_t    = sum_{s<=t} (phi(q_t) . phi(k_s)) v_s / (phi(q_t) . sum_{s<=t} phi(k_s) + eps)
    y      = concat_h(o) W_o

The denominator is positive (``1 + a + a^2/2 > 0``). The parallel form is chunked linear
attention over the ``1 + d + d^2`` features (linear in L); ``step`` carries ``S = sum phi(k) v^T``
and ``z = sum phi(k)`` -- the recurrent state is ``n_heads (1 + d + d^2) (d_model / n_heads + 1)``
numbers.

Zoology's Based model pairs this layer with a short gated convolution (``base-conv`` with
kernel 3, a separate layer: its figure-2 "based" is [base-conv, based]) and, in the Based paper,
with ``sliding-window-attention``; ``architectures/based.yaml`` ships that pairing. Defaults:
feature_dim 16 and eps 1e-12 (Zoology's), one head (Zoology's figure-2 setting; Zoology's class
default of 12 heads does not divide the MAD widths).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...configs.primitives.based import BasedConfig
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ...ops.gla.reference import chunk_simple_gla
from ._linear_common import chunked_flops_per_token


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """``[..., d] -> [..., 1 + d + d^2]`` with ``phi(a) . phi(b) = 1 + a.b/sqrt(d) + (a.b)^2/(2d)``."""
    d = x.shape[-1]
    x2 = (x[..., :, None] * x[..., None, :]).flatten(-2) / math.sqrt(2 * d)
    return torch.cat((torch.ones_like(x[..., :1]), x / d ** 0.25, x2), dim=-1)


@register(BasedConfig)
class Based(SequenceMixer):
    """Based: linear attention with the 2nd-order Taylor feature map of exp (normalised)."""

    def __init__(self, cfg: BasedConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        self.n_heads, self.head_dim = cfg.n_heads, d_model // cfg.n_heads
        self.n_features = 1 + cfg.feature_dim + cfg.feature_dim**2
        self.q_proj = nn.Linear(d_model, cfg.feature_dim * cfg.n_heads, bias=False)
        self.k_proj = nn.Linear(d_model, cfg.feature_dim * cfg.n_heads, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, self.n_heads, -1).transpose(1, 2)  # noqa: E731
        q = taylor_features(upcast(split(self.q_proj(x))))
        k = taylor_features(upcast(split(self.k_proj(x))))
        return q, k, split(self.v_proj(x))  # [B, H, L, F], [B, H, L, F], [B, H, L, d_h]

    def _out(self, o: torch.Tensor, q: torch.Tensor, z: torch.Tensor, dtype) -> torch.Tensor:
        o = upcast(o) / ((q * z).sum(-1, keepdim=True) + self.cfg.eps)  # [B, H, L, d_h]
        B, _, L, _ = o.shape
        return self.o_proj(o.transpose(1, 2).reshape(B, L, self.d_model).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        o = chunk_simple_gla(q, k, upcast(v), None, scale=1.0, chunk_size=self.cfg.chunk_size)
        return self._out(o, q, k.cumsum(dim=2), x.dtype)

    def init_state(self, batch_size: int, device=None, dtype=None):
        H, Fd = self.n_heads, self.n_features
        kind = self.state_kind(device, dtype)
        return {"S": torch.zeros(batch_size, H, Fd, self.head_dim, **kind),
                "z": torch.zeros(batch_size, H, Fd, **kind)}

    def step(self, x_t: torch.Tensor, state):
        q, k, v = self._heads(x_t[:, None])  # [B, H, 1, .]
        S = state["S"] + k[:, :, 0, :, None] * upcast(v[:, :, 0, None, :])
        z = state["z"] + k[:, :, 0]
        o = q @ S  # [B, H, 1, d_h]
        return self._out(o, q, z[:, :, None], x_t.dtype)[:, 0], {"S": S, "z": z}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        Fd = self.n_features
        return (chunked_flops_per_token(self.n_heads, Fd, self.head_dim, self.cfg.chunk_size, seq_len)
                + 4.0 * self.n_heads * Fd + self.n_heads * self.cfg.feature_dim**2)
