"""Gated linear attention (Yang et al., 2023, "Gated Linear Attention Transformers with
Hardware-Efficient Training"), as in flash-linear-attention's / MAD-Lab's GLA layer.

    q, k, v, r = x W_q, x W_k, x W_v, x W_r          (per head h: key dim d_k, value dim d_v)
    log a_t    = logsigmoid(W_a2 (W_a1 x_t) + b_a) / gate_logit_normalizer   (low-rank, per key)
    S_t        = diag(a_t) S_{t-1} + k_t v_t^T,      o_t = S_t^T q_t / sqrt(d_k)
    y_t        = W_o concat_h( Norm_h(o_t) * swish(r_t) )

``Norm_h`` is an RMSNorm over each head's d_v features (weight shared across heads; fla and
MAD-Lab), or a LayerNorm (``norm='layer'``, the paper's per-head LayerNorm). The parallel form
is the op :func:`mad_bench.ops.gla.chunk_gla` (stable for any gate), linear in L.
Weights are initialised as in MAD-Lab / fla (Xavier-uniform, gain 2^-2.5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.gla import GatedLinearAttentionConfig
from ...ops import gla
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from ._linear_common import HeadNorm, add_qkv_projections, chunked_flops_per_token


@register(GatedLinearAttentionConfig)
class GatedLinearAttention(SequenceMixer):
    """Gated linear attention: per-key data-dependent forget gates, swish-gated head norm."""

    ops = (gla,)

    def __init__(self, cfg: GatedLinearAttentionConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        add_qkv_projections(self, cfg, d_model)
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if cfg.output_gate else None
        self.gk_down = nn.Linear(d_model, cfg.gate_low_rank_dim, bias=False)
        self.gk_up = nn.Linear(cfg.gate_low_rank_dim, self.key_dim, bias=True)
        self.o_norm = HeadNorm(self.dv, cfg.norm, cfg.norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.o_proj,
                    self.gk_down, self.gk_up):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight, gain=2**-2.5)

    def _split(self, t: torch.Tensor, d: int) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, d).transpose(1, 2)

    def _project(self, x: torch.Tensor):
        q = self._split(self.q_proj(x), self.dk)
        k = self._split(self.k_proj(x), self.dk)
        v = self._split(self.v_proj(x), self.dv)
        log_g = F.logsigmoid(upcast(self.gk_up(self.gk_down(x)))) / self.cfg.gate_logit_normalizer
        return q, k, v, self._split(log_g, self.dk)

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``o [B, L, H, d_v]`` -> ``[B, L, d_model]``: head norm, swish gate, output projection."""
        B, L = o.shape[:2]
        o = self.o_norm(o).reshape(B, L, self.value_dim)
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, log_g = self._project(x)
        o = gla.chunk_gla(q, k, v, log_g, scale=self.dk**-0.5, chunk_size=self.cfg.chunk_size,
                          sub_chunk_size=self.cfg.sub_chunk_size, impl=self.cfg.impl)
        return self._output(o.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return torch.zeros(batch_size, self.n_heads, self.dk, self.dv,
                           **self.state_kind(device, dtype))

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        q, k, v, log_g = (upcast(t[:, :, 0]) for t in self._project(x_t[:, None]))  # [B, H, d]
        S = torch.exp(log_g)[..., None] * state + k[..., :, None] * v[..., None, :]
        o = ((q * self.dk**-0.5)[..., None, :] @ S)[..., 0, :]  # [B, H, d_v]
        y = self._output(o.to(x_t.dtype)[:, None], x_t[:, None])[:, 0]
        return y, S

    def mixing_flops_per_token(self, seq_len: int) -> float:
        return chunked_flops_per_token(self.n_heads, self.dk, self.dv, self.cfg.chunk_size,
                                       seq_len) + 4.0 * self.key_dim
