"""Multi-head causal linear attention (Katharopoulos et al., 2020, "Transformers are RNNs").

    q, k, v = x W_q, x W_k, x W_v                   (per head h, head dim d_h = d_model / n_heads)
    phi     = elu(.) + 1 | relu | identity | hadamard (phi(x) = (A x + a) * (B x + b), MAD-Lab's
              learned "elementwise_product" map, separate for q and k, shared across heads)
    S_t     = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t)
    o_t     = S_t^T phi(q_t) / (phi(q_t) . z_t + eps)     (``normalize=False``: no denominator)
    y       = concat_h(o) W_o

The parallel form is the op :func:`mad_bench.ops.gla.chunk_simple_gla` with no decay
(intra-chunk masked matmuls plus a cumulative state), linear in L; the normaliser is ``phi(q_t) . cumsum(phi(k))_t``.
``step`` carries ``(S, z)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.linear_attention import LinearAttentionConfig
from ...ops import gla
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ._linear_common import chunked_flops_per_token


class _Hadamard(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.a, self.b = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * self.b(x)


@register(LinearAttentionConfig)
class LinearAttention(SequenceMixer):
    """Causal multi-head linear attention with a feature map and an optional normaliser."""

    ops = (gla,)

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        self.n_heads = cfg.n_heads
        self.head_dim = d_model // cfg.n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=cfg.bias)
        self.out = nn.Linear(d_model, d_model, bias=cfg.bias)
        if cfg.feature_map == "hadamard":
            self.phi_q, self.phi_k = _Hadamard(self.head_dim), _Hadamard(self.head_dim)

    def _phi(self, x: torch.Tensor, which: str) -> torch.Tensor:
        fm = self.cfg.feature_map
        if fm == "elu":
            return F.elu(x) + 1.0
        if fm == "relu":
            return F.relu(x)
        if fm == "identity":
            return x
        return (self.phi_q if which == "q" else self.phi_k)(x)

    def _heads(self, x: torch.Tensor):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self._phi(q, "q"), self._phi(k, "k"), v  # each [B, H, L, d_h]

    def _normalise(self, o: torch.Tensor, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        den = (upcast(q) * z).sum(-1, keepdim=True) + self.cfg.eps
        return (upcast(o) / den).to(o.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self._heads(x)
        o = gla.chunk_simple_gla(q, k, v, None, scale=1.0, chunk_size=self.cfg.chunk_size,
                                 impl=self.cfg.impl)
        if self.cfg.normalize:
            o = self._normalise(o, q, upcast(k).cumsum(dim=2))
        return self.out(o.transpose(1, 2).reshape(B, L, D))

    def init_state(self, batch_size: int, device=None, dtype=None):
        H, d = self.n_heads, self.head_dim
        return {
            "S": torch.zeros(batch_size, H, d, d, **self.state_kind(device, dtype)),
            "z": torch.zeros(batch_size, H, d, **self.state_kind(device, dtype)),
        }

    def step(self, x_t: torch.Tensor, state):
        q, k, v = (t[:, :, 0] for t in self._heads(x_t[:, None]))  # [B, H, d_h]
        S = state["S"] + upcast(k)[..., :, None] * upcast(v)[..., None, :]
        z = state["z"] + upcast(k)
        o = (upcast(q)[..., None, :] @ S)[..., 0, :]
        if self.cfg.normalize:
            o = self._normalise(o, q, z)
        y = self.out(o.to(x_t.dtype).reshape(x_t.shape[0], self.d_model))
        return y, {"S": S, "z": z}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        d = self.head_dim
        flops = chunked_flops_per_token(self.n_heads, d, d, self.cfg.chunk_size, seq_len)
        return flops + (4.0 * self.d_model if self.cfg.normalize else 0.0)
