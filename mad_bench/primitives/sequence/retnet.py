"""Multi-scale retention (Sun et al., 2023, "Retentive Network: A Successor to Transformer for
Large Language Models").

    q, k, v, r = x W_q, x W_k, x W_v, x W_g          (per head h: key dim d_k, value dim d_v)
    q, k       = Rot(q), Rot(k)                       (rotary part of xPos, optional)
    gamma_h    = 1 - 2^(-5 - h),  h = 0 .. n_heads-1  (fixed multi-scale decay, one per head)
    S_t        = gamma_h S_{t-1} + (k_t / sqrt(d_k)) v_t^T,     o_t = S_t^T q_t
    y_t        = W_o ( swish(r_t) * concat_h GroupNorm_h(o_t) )

The decay rule is the paper's ``gamma = 1 - 2^(-5 - arange(h))``: the number of heads sets the
range of time scales (head 0 remembers ~32 steps, head h ~2^(5+h)). ``GroupNorm_h`` normalises
each head separately (``norm='layer'``: the paper's GroupNorm with one group per head; ``'rms'``:
fla's per-head RMSNorm). xPos's length-extrapolation scaling is not implemented (the fixed decay
already damps distant positions); ``rotary=False`` drops the rotation too. The parallel form is
the chunkwise retention of the paper (the op :func:`mad_bench.ops.gla.chunk_simple_gla`),
linear in L.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.retnet import RetNetConfig
from ...ops import gla
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ._linear_common import HeadNorm, add_qkv_projections, chunked_flops_per_token
from .attention import apply_rotary, rotary_tables


@register(RetNetConfig)
class RetNet(SequenceMixer):
    """Multi-scale retention: fixed per-head decays, rotary q/k, swish gate, per-head norm."""

    ops = (gla,)

    def __init__(self, cfg: RetNetConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        add_qkv_projections(self, cfg, d_model)
        H = self.n_heads
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.o_norm = HeadNorm(self.dv, cfg.norm, cfg.norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.o_proj):
            nn.init.xavier_uniform_(lin.weight, gain=2**-2.5)
        gamma = 1.0 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float64))
        self.register_buffer("log_gamma", gamma.log().float(), persistent=False)  # [H]
        cos, sin = rotary_tables(max_len, self.dk if cfg.rotary else 0, cfg.rotary_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _split(self, t: torch.Tensor, d: int) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, d).transpose(1, 2)

    def _project(self, x: torch.Tensor, pos: int):
        L = x.shape[1]
        if pos + L > self.max_len and self.cfg.rotary:
            raise ValueError(f"retnet position {pos + L} beyond max_len={self.max_len}")
        cos, sin = self.cos[pos : pos + L], self.sin[pos : pos + L]
        q = apply_rotary(self._split(self.q_proj(x), self.dk), cos, sin)
        k = apply_rotary(self._split(self.k_proj(x), self.dk), cos, sin)
        return q, k, self._split(self.v_proj(x), self.dv)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, L = o.shape[:2]  # o [B, L, H, d_v]
        o = self.o_norm(o).reshape(B, L, self.value_dim)
        return self.o_proj(F.silu(self.g_proj(x)) * o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = self._project(x, 0)
        log_g = self.log_gamma[None, :, None].expand(B, self.n_heads, L)
        o = gla.chunk_simple_gla(q, k, v, log_g, scale=self.dk**-0.5,
                                 chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        return self._output(o.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        S = torch.zeros(batch_size, self.n_heads, self.dk, self.dv,
                        **self.state_kind(device, dtype))
        return {"S": S, "pos": 0}

    def step(self, x_t: torch.Tensor, state):
        q, k, v = (upcast(t[:, :, 0]) for t in self._project(x_t[:, None], state["pos"]))
        gamma = torch.exp(self.log_gamma)[None, :, None, None]
        S = gamma * state["S"] + k[..., :, None] * v[..., None, :]
        o = ((q * self.dk**-0.5)[..., None, :] @ S)[..., 0, :]
        y = self._output(o.to(x_t.dtype)[:, None], x_t[:, None])[:, 0]
        return y, {"S": S, "pos": state["pos"] + 1}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        return chunked_flops_per_token(self.n_heads, self.dk, self.dv, self.cfg.chunk_size, seq_len)

