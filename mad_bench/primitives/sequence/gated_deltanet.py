"""Gated DeltaNet (Yang, Kautz & Hatamizadeh, 2024, "Gated Delta Networks: Improving Mamba2 with
Delta Rule"), as in flash-linear-attention's ``GatedDeltaNet`` layer and MAD-Lab's config.

    q, k, v  = silu(conv(x W_q)), silu(conv(x W_k)), silu(conv(x W_v))   (short causal convs)
    q, k     = q / ||q||_2, k / ||k||_2                                    (per head)
    beta_t   = sigmoid(x_t W_b)                      (write strength, one per head)
    log g_t  = -exp(A_log) * softplus(x_t W_a + dt_bias)                 (Mamba-2's decay, eq. 4)
    S_t      = g_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T q_t / sqrt(d_k)
    y_t      = W_o concat_h( RMSNorm_h(o_t) * silu(x_t W_g) )            (paper eq. 10, fig. 1)

The parallel form is the chunked one (``mad_bench.ops.gated_delta_rule``: the WY / UT form with
the decay folded in, linear in L; Triton kernels on CUDA). ``step`` carries ``S`` and the conv
buffers. Initialisation follows fla: ``A ~ U(0, 16)``, ``dt ~ logU(1e-3, 1e-1)`` stored as the
softplus-inverse ``dt_bias``.

Defaults are MAD-Lab's ``configs/layers/gated-delta-net.yml`` (head_dim 32, expand_v 2, output
gate and short conv 4 on, no conv bias), with the head count derived from the width:
``n_heads = max(1, d_model // head_dim)`` (4 at MAD-Lab's d_model 128).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.gated_deltanet import GatedDeltaNetConfig
from ...ops import causal_conv, gated_delta_rule
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ._linear_common import (
    add_delta_rule_io, chunked_flops_per_token, conv_qkv, conv_qkv_step, delta_state,
)


@register(GatedDeltaNetConfig)
class GatedDeltaNet(SequenceMixer):
    """Gated DeltaNet: the delta rule with a Mamba-2 style per-head decay and an output gate."""

    ops = (gated_delta_rule, causal_conv)

    def __init__(self, cfg: GatedDeltaNetConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        H = self.n_heads = cfg.heads(d_model)
        self.dk, self.dv = cfg.head_dim, int(cfg.expand_v * cfg.head_dim)
        self.key_dim, self.value_dim = H * self.dk, H * self.dv
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.a_proj = nn.Linear(d_model, H, bias=False)
        self.b_proj = nn.Linear(d_model, H, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1e-4, 16.0)))
        dt = torch.exp(torch.rand(H) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        dt = dt.clamp_min(1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        add_delta_rule_io(self, cfg, d_model)

    def _split(self, t: torch.Tensor, d: int) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, d).transpose(1, 2)

    def _heads(self, q, k, v, x):
        if self.cfg.short_conv:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q = F.normalize(upcast(self._split(q, self.dk)), dim=-1)
        k = F.normalize(upcast(self._split(k, self.dk)), dim=-1)
        v = self._split(v, self.dv)
        beta = torch.sigmoid(upcast(self.b_proj(x))).transpose(1, 2)  # [B, H, L]
        log_g = -self.A_log.exp() * F.softplus(upcast(self.a_proj(x)) + self.dt_bias)
        return q, k, v, beta, log_g.transpose(1, 2)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, L = o.shape[:2]  # o [B, L, H, d_v]
        o = self.o_norm(o.to(x.dtype)).reshape(B, L, self.value_dim)
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = conv_qkv(self, x)
        q, k, v, beta, log_g = self._heads(q, k, v, x)
        o = gated_delta_rule.gated_delta_rule(q, k, v, beta, log_g, scale=self.dk**-0.5,
                             chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        return self._output(o.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return delta_state(self, batch_size, device, dtype)

    def step(self, x_t: torch.Tensor, state):
        new = {}
        q, k, v = conv_qkv_step(self, x_t, state, new)
        q, k, v, beta, log_g = (t[:, :, 0] for t in self._heads(q[:, None], k[:, None],
                                                                v[:, None], x_t[:, None]))
        S = torch.exp(log_g)[..., None, None] * state["S"]
        err = upcast(v) - (k[..., None, :] @ S)[..., 0, :]  # v - S'^T k
        S = S + (beta[..., None] * k)[..., :, None] * err[..., None, :]
        o = ((q * self.dk**-0.5)[..., None, :] @ S)[..., 0, :]
        new["S"] = S
        return self._output(o[:, None], x_t[:, None])[:, 0], new

    def mixing_flops_per_token(self, seq_len: int) -> float:
        c = min(self.cfg.chunk_size, seq_len)
        extra = self.n_heads * (2.0 * c * self.dk + c * (self.dk + self.dv) + 4 * self.dk * self.dv)
        return chunked_flops_per_token(self.n_heads, self.dk, self.dv, self.cfg.chunk_size,
                                       seq_len) + extra
