"""Mamba-1 selective state-space mixer (Gu & Dao, 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces").

    x, z   = split(x W_in)                                 (each of width E = expand * d_model)
    x      = silu(causal_depthwise_conv(x))                (kernel d_conv)
    dt_r, B, C = split(x W_x)                              (dt_rank, d_state, d_state)
    dt     = softplus(dt_r W_dt + b_dt)                    ([B, L, E], one step size per channel)
    A      = -exp(A_log)                                   ([E, N], S4D-real init: A[:, n] = -(n+1))
    h_t    = exp(dt_t A) * h_{t-1} + (dt_t x_t) B_t        (h: [E, N]; ZOH on A, Euler on B)
    y_t    = h_t C_t + D * x_t
    out    = (y * silu(z)) W_out

MAD-Lab defaults: d_state 4, d_conv 4, expand 2, dt_rank "auto" = ceil(d_model / 16).

The parallel form calls two ops: :func:`mad_bench.ops.causal_conv.causal_conv1d` and
:func:`mad_bench.ops.selective_scan.selective_scan` (torch: a chunked two-level scan; Triton: a
fused scan); ``step`` runs the recurrence above one token at a time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.mamba import MambaConfig
from ...ops import causal_conv, selective_scan
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register


# ----------------------------------------------------------------------------- shared helpers
def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def init_dt_bias(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Bias whose softplus is log-uniform in [dt_min, dt_max] (Mamba's dt initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return inverse_softplus(dt.clamp(min=floor))


# ----------------------------------------------------------------------------- the layer


@register(MambaConfig)
class Mamba(SequenceMixer):
    """Mamba-1 selective SSM: gated conv + input-dependent diagonal state-space scan."""

    ops = (causal_conv, selective_scan)

    def __init__(self, cfg: MambaConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        E, N = cfg.expand * d_model, cfg.d_state
        R = math.ceil(d_model / 16) if cfg.dt_rank == "auto" else cfg.dt_rank
        self.d_inner, self.dt_rank = E, R
        self.in_proj = nn.Linear(d_model, 2 * E, bias=cfg.bias)
        self.conv1d = nn.Conv1d(E, E, cfg.d_conv, groups=E, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.out_proj = nn.Linear(E, d_model, bias=cfg.bias)
        # Mamba's initialisation: dt_proj weight ~ U(+-R^-0.5), softplus(bias) log-uniform.
        std = R**-0.5
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            self.dt_proj.bias.copy_(init_dt_bias(E, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor))
        self.dt_proj.bias._no_reinit = True  # the LM's init zeroes Linear biases, not this one
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1)  # S4D-real
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(E))
        # mamba_ssm (and MAD-Lab's copy, mad/model/layers/mamba.py) exempt both from weight decay
        self.A_log._no_weight_decay = self.D._no_weight_decay = True

    def _split(self, xc: torch.Tensor):
        N, R = self.cfg.d_state, self.dt_rank
        dt, Bm, Cm = self.x_proj(xc).split([R, N, N], dim=-1)
        return dt @ self.dt_proj.weight.t(), Bm, Cm  # dt before bias + softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, E]
        impl = self.cfg.impl
        xc = causal_conv1d(xs, self.conv1d.weight, self.conv1d.bias, "silu", impl=impl)
        dt, Bm, Cm = self._split(xc)
        A = -torch.exp(upcast(self.A_log))
        # [b, l, d] tensors as the scan's [b, d, l] views (no copy); bias + softplus, D, gate fused
        y = selective_scan.selective_scan(
            xc.transpose(1, 2), dt.transpose(1, 2), A, Bm.transpose(1, 2), Cm.transpose(1, 2),
            self.D, z.transpose(1, 2), self.dt_proj.bias, True, chunk_size=self.cfg.chunk_size,
            impl=impl,
        )
        return self.out_proj(y.transpose(1, 2).to(x.dtype))

    def init_state(self, batch_size: int, device=None, dtype=None):
        kind = self.state_kind(device, dtype)
        return {
            "conv": torch.zeros(batch_size, self.d_inner, self.cfg.d_conv, **kind),
            "ssm": torch.zeros(batch_size, self.d_inner, self.cfg.d_state, **kind),
        }

    def step(self, x_t: torch.Tensor, state):
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)  # [B, E]
        xc, window = causal_conv1d_step(xs, state["conv"], self.conv1d.weight, self.conv1d.bias)
        xc = F.silu(xc)
        dt, Bm, Cm = self._split(xc)
        dt = F.softplus(upcast(dt + self.dt_proj.bias))  # [B, E]
        A = -torch.exp(upcast(self.A_log))  # [E, N]
        x_in = (dt * upcast(xc))[:, :, None] * upcast(Bm)[:, None, :]
        h = torch.exp(dt[:, :, None] * A) * state["ssm"] + x_in
        y = (h * upcast(Cm)[:, None, :]).sum(-1) + upcast(self.D) * upcast(xc)
        y = (y * F.silu(upcast(z))).to(x_t.dtype)
        return self.out_proj(y), {"conv": window, "ssm": h}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # Per (channel, state): decay mul+exp, input mul, update mul+add, readout mul+add, plus
        # the carried-state correction of the chunked form (exp, mul, add): ~10.
        return float(10 * self.d_inner * self.cfg.d_state)
