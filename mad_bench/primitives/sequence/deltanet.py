"""DeltaNet: linear attention with the delta rule (Schlag et al., 2021, "Linear Transformers Are
Secretly Fast Weight Programmers"; Yang et al., 2024, "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length"), as in flash-linear-attention's DeltaNet layer.

    q, k, v  = act(conv(x W_q)), act(conv(x W_k)), silu(conv(x W_v))   (conv: optional short
               depthwise causal convolution; act: silu by default)
    q, k     = q / ||q||_2, k / ||k||_2                  (per head)
    beta_t   = sigmoid(x_t W_beta)                        (one write strength per head)
    S_t      = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,   o_t = S_t q_t / sqrt(d_k)
    y_t      = W_o concat_h( RMSNorm_h(o_t) [* swish(x_t W_g)] )

(``S`` above is value-major, as in the paper; the code keeps the transpose, key-major.) The
parallel form is the op :func:`mad_bench.ops.delta_rule.chunk_delta_rule` (torch: the chunkwise
WY / UT form of Yang et al. 2024, a triangular solve per chunk, then a state pass across chunks,
linear in L; Triton: the sequential recurrence).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.deltanet import DeltaNetConfig
from ...ops import causal_conv, delta_rule
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ._linear_common import (
    add_delta_rule_io, add_qkv_projections, chunked_flops_per_token, conv_qkv, conv_qkv_step,
    delta_state,
)

_ACT = {"silu": F.silu, "relu": F.relu, "elu1": lambda x: F.elu(x) + 1.0, "identity": lambda x: x}


@register(DeltaNetConfig)
class DeltaNet(SequenceMixer):
    """DeltaNet: delta-rule fast weights with L2-normalised q/k and sigmoid write strengths."""

    ops = (causal_conv, delta_rule)

    def __init__(self, cfg: DeltaNetConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        add_qkv_projections(self, cfg, d_model)
        H = self.n_heads
        self.b_proj = nn.Linear(d_model, H, bias=False)
        add_delta_rule_io(self, cfg, d_model)

    def _split(self, t: torch.Tensor, d: int) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, d).transpose(1, 2)

    def _heads(self, q, k, v, x):
        act = _ACT[self.cfg.qk_activation]
        q = F.normalize(upcast(self._split(act(q), self.dk)), dim=-1)
        k = F.normalize(upcast(self._split(act(k), self.dk)), dim=-1)
        v = self._split(_ACT[self.cfg.v_activation](v), self.dv)
        beta = torch.sigmoid(upcast(self.b_proj(x))).transpose(1, 2)  # [B, H, L]
        return q, k, v, beta

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, L = o.shape[:2]  # o [B, L, H, d_v]
        o = self.o_norm(o).reshape(B, L, self.value_dim)
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = conv_qkv(self, x)
        q, k, v, beta = self._heads(q, k, v, x)
        o = delta_rule.chunk_delta_rule(q, k, v, beta, scale=self.dk**-0.5,
                                        chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        return self._output(o.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return delta_state(self, batch_size, device, dtype)

    def step(self, x_t: torch.Tensor, state):
        new = {}
        q, k, v = conv_qkv_step(self, x_t, state, new)
        q, k, v, beta = (t[:, :, 0] for t in self._heads(q[:, None], k[:, None], v[:, None],
                                                          x_t[:, None]))
        S, v = state["S"], upcast(v)
        pred = (k[..., None, :] @ S)[..., 0, :]  # S^T k: the value the state recalls for k
        S = S + (beta[..., None] * k)[..., :, None] * (v - pred)[..., None, :]
        o = ((q * self.dk**-0.5)[..., None, :] @ S)[..., 0, :]
        new["S"] = S
        return self._output(o.to(x_t.dtype)[:, None], x_t[:, None])[:, 0], new

    def mixing_flops_per_token(self, seq_len: int) -> float:
        c = min(self.cfg.chunk_size, seq_len)
        # chunked form + the UT transform (k k^T, triangular solve on [v, k], W S_0 per chunk)
        extra = self.n_heads * (2.0 * c * self.dk + c * (self.dk + self.dv) + 4 * self.dk * self.dv)
        # (the short convs are Conv1d weights: flops_per_token already counts them)
        return chunked_flops_per_token(self.n_heads, self.dk, self.dv, self.cfg.chunk_size,
                                       seq_len) + extra
