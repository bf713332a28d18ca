"""Mamba-2 state-space duality (SSD) mixer (Dao & Gu, 2024, "Transformers are SSMs:
Generalized Models and Efficient Algorithms Through Structured State Space Duality").

    z, xBC, dt = split(x W_in)                   (E = expand * d_model, G groups of B/C of size N)
    x, B, C    = split(silu(causal_depthwise_conv(xBC)))   (x: H heads of dim P = headdim)
    dt         = softplus(dt + dt_bias)          ([B, L, H], one step size per head)
    A          = -exp(A_log)                     (one scalar per head, init uniform in [1, 16])
    h_t        = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T      (h: [H, P, N]; head h reads group
    y_t        = h_t C_t + D x_t                           h // (H / G) of B and C)
    out        = RMSNorm(y * silu(z)) W_out      (gated RMSNorm over the E channels)

Defaults scaled to d_model 128: expand 2, headdim 32 (8 heads), d_state 16, one B/C group,
d_conv 4. The parallel form calls :func:`mad_bench.ops.causal_conv.causal_conv1d` and
:func:`mad_bench.ops.ssd.ssd` (torch: the chunked SSD algorithm; Triton: the retention kernel);
``step`` runs the recurrence above.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.mamba2 import Mamba2Config
from ...ops import causal_conv, ssd
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from .mamba import init_dt_bias


@register(Mamba2Config)
class Mamba2(SequenceMixer):
    """Mamba-2 (SSD): multi-head selective SSM with scalar per-head decay and gated RMSNorm."""

    ops = (causal_conv, ssd)

    def __init__(self, cfg: Mamba2Config, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        E, N, G = cfg.expand * d_model, cfg.d_state, cfg.n_groups
        H = E // cfg.headdim
        self.d_inner, self.n_heads = E, H
        self.conv_dim = E + 2 * G * N
        self.in_proj = nn.Linear(d_model, E + self.conv_dim + H, bias=cfg.bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim, bias=cfg.conv_bias
        )
        self.dt_bias = nn.Parameter(init_dt_bias(H, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor))
        A = torch.empty(H).uniform_(cfg.A_init_min, cfg.A_init_max)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(H))
        # mamba_ssm's Mamba2 exempts dt_bias, A_log and D from weight decay
        self.dt_bias._no_weight_decay = self.A_log._no_weight_decay = self.D._no_weight_decay = True
        self.norm_weight = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=cfg.bias)

    def _gated_norm(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = upcast(y) * F.silu(upcast(z))
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps)
        return y * upcast(self.norm_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bsz, L, _ = x.shape
        E, H, P = self.d_inner, self.n_heads, self.cfg.headdim
        G, N = self.cfg.n_groups, self.cfg.d_state
        z, xBC, dt = self.in_proj(x).split([E, self.conv_dim, H], dim=-1)
        xBC = causal_conv1d(xBC, self.conv1d.weight, self.conv1d.bias, "silu", impl=self.cfg.impl)
        xs, Bm, Cm = xBC.split([E, G * N, G * N], dim=-1)
        dt = F.softplus(upcast(dt + self.dt_bias))
        A = -torch.exp(upcast(self.A_log))
        xh = xs.view(Bsz, L, H, P)
        y = ssd.ssd(xh, dt, A, Bm.view(Bsz, L, G, N), Cm.view(Bsz, L, G, N),
                    chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        y = upcast(y) + upcast(self.D)[:, None] * upcast(xh)
        y = self._gated_norm(y.reshape(Bsz, L, E), z)
        return self.out_proj(y.to(x.dtype))

    def init_state(self, batch_size: int, device=None, dtype=None):
        return {
            "conv": torch.zeros(batch_size, self.conv_dim, self.cfg.d_conv,
                                **self.state_kind(device, dtype)),
            "ssm": torch.zeros(batch_size, self.n_heads, self.cfg.headdim, self.cfg.d_state,
                               **self.state_kind(device, dtype)),
        }

    def step(self, x_t: torch.Tensor, state):
        Bsz = x_t.shape[0]
        E, H, P = self.d_inner, self.n_heads, self.cfg.headdim
        G, N = self.cfg.n_groups, self.cfg.d_state
        z, xBC, dt = self.in_proj(x_t).split([E, self.conv_dim, H], dim=-1)
        xBC, window = causal_conv1d_step(xBC, state["conv"], self.conv1d.weight, self.conv1d.bias)
        xs, Bm, Cm = F.silu(xBC).split([E, G * N, G * N], dim=-1)
        dt = F.softplus(upcast(dt + self.dt_bias))  # [B, H]
        A = -torch.exp(upcast(self.A_log))
        xh = upcast(xs).view(Bsz, H, P)
        Bh = upcast(Bm).view(Bsz, G, N).repeat_interleave(H // G, dim=1)  # [B, H, N]
        Ch = upcast(Cm).view(Bsz, G, N).repeat_interleave(H // G, dim=1)
        decay = torch.exp(dt * A)[..., None, None]
        h = decay * state["ssm"] + (dt[..., None] * xh)[..., None] * Bh[:, :, None, :]
        y = (h @ Ch[..., None])[..., 0] + upcast(self.D)[:, None] * xh  # [B, H, P]
        y = self._gated_norm(y.reshape(Bsz, E), z)
        return self.out_proj(y.to(x_t.dtype)), {"conv": window, "ssm": h}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # chunked SSD per head: C B^T scores and scores @ x over a chunk (2 T (N + P)), chunk
        # states and the carried-state readout (4 P N); plus the gated norm (~5 E).
        T = min(self.cfg.chunk_size, seq_len)
        N, P = self.cfg.d_state, self.cfg.headdim
        return float(self.n_heads * (2 * T * (N + P) + 4 * P * N) + 5 * self.d_inner)
