"""Mamba-1 selective state-space mixer (Gu & Dao, 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces").

    x, z   = split(x W_in)                                 (each of width E = expand * d_model)
    x      = silu(causal_depthwise_conv(x))                (kernel d_conv)
    dt_r, B, C = split(x W_x)                              (dt_rank, d_state, d_state)
    dt     = softplus(dt_r W_dt + b_dt)                    ([B, L, E], one step size per channel)
    A      = -exp(A_log)                                   ([E, N], S4D-real init: A[:, n] = -(n+1))
    h_t    = exp(dt_t A) * h_{t-1} + (dt_t x_t) B_t        (h: [E, N] per sequence; ZOH on A, Euler on B)
    y_t    = h_t C_t + D * x_t
    out    = (y * silu(z)) W_out

MAD-Lab defaults: d_state 4, d_conv 4, expand 2, dt_rank "auto" = ceil(d_model / 16).

The parallel form is :func:`selective_scan` (mamba's ``selective_scan_fn`` argument convention),
a chunked scan in plain torch; ``step`` runs the recurrence above one token at a time.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..base import SequenceMixer, SequenceMixerConfig
from ..registry import register


# ----------------------------------------------------------------------------- shared helpers
def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """Causal depthwise conv along time: ``x[B, L, C]``, ``weight[C, 1, K]`` -> ``[B, L, C]``.

    ``y[t, c] = bias[c] + sum_j weight[c, 0, j] * x[t - (K - 1) + j, c]`` (zeros before t = 0).
    """
    K = weight.shape[-1]
    xt = F.pad(x.transpose(1, 2), (K - 1, 0))
    return F.conv1d(xt, weight, bias, groups=weight.shape[0]).transpose(1, 2)


def conv_step(window: torch.Tensor, x_t: torch.Tensor, weight: torch.Tensor, bias):
    """One step of :func:`causal_depthwise_conv`. ``window[B, C, K]`` holds the last K inputs.

    Returns ``(y_t[B, C], new_window)``; the input window is not modified.
    """
    window = torch.cat((window[:, :, 1:], x_t[:, :, None].to(window.dtype)), dim=2)
    y = (window.to(x_t.dtype) * weight[:, 0, :]).sum(-1)
    if bias is not None:
        y = y + bias
    return y, window


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def init_dt_bias(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Bias whose softplus is log-uniform in [dt_min, dt_max] (Mamba's dt initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return inverse_softplus(dt.clamp(min=floor))


# ----------------------------------------------------------------------------- the scan
def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 16,
):
    """Selective scan, torch reference (argument convention of mamba's ``selective_scan_fn``).

    Shapes: ``u, delta[b, d, l]``, ``A[d, n]`` (negative reals), ``B, C[b, n, l]`` (or
    ``[b, g, n, l]`` with g dividing d), ``D[d]``, ``z[b, d, l]``, ``delta_bias[d]``,
    ``initial_state[b, d, n]``. Computes, with ``delta <- softplus(delta + delta_bias)``::

        h_t = exp(delta_t A) * h_{t-1} + delta_t u_t B_t        h: [b, d, n]
        y_t = sum_n C_t[n] h_t[:, :, n] + D u_t ;   y <- y * silu(z)

    and returns ``y[b, d, l]`` (and the last ``h`` when ``return_last_state``).

    Algorithm (chunked; exact, no division by decays, so stable for any ``delta >= 0``):
    the sequence is cut into chunks of ``chunk_size`` steps (zero-padded at the end: a padded
    step has ``delta = 0``, i.e. decay 1 and no input, so the final state is exact).

    1. Per chunk, the cumulative log-decay ``G_t = sum_{r <= t in chunk} delta_r A`` ([.., T, n]).
    2. Intra-chunk states from a zero start: ``h_t = sum_{s <= t} exp(G_t - G_s) x_s`` with
       ``x_s = delta_s u_s B_s``: the masked ``exp(segsum)`` matrix ``[T, T]`` per (channel,
       state) times the inputs, computed for all chunks at once. ``G_t - G_s <= 0`` on the kept
       triangle and the other triangle is set to ``-inf`` before ``exp``, so nothing overflows.
    3. Inter-chunk: the state entering chunk c, ``S_c = exp(G_end) S_{c-1} + h_end`` — a loop over
       the ``l / chunk_size`` chunks on ``[b, d, n]`` tensors.
    4. ``h_t += exp(G_t) S_c`` for t in chunk c, then ``y_t = C_t . h_t + D u_t``.

    Work per token is O(chunk_size * d * n) for step 2 and O(d * n) otherwise.
    """
    dtype_in = u.dtype
    b, d, l = u.shape
    n = A.shape[1]
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    A = A.float()
    if B.dim() == 4:  # grouped: [b, g, n, l] -> [b, d, n, l]
        B = B.repeat_interleave(d // B.shape[1], dim=1)
    if C.dim() == 4:
        C = C.repeat_interleave(d // C.shape[1], dim=1)
    # Put B, C in [b, (d|1), l, n].
    Bt = (B[:, None] if B.dim() == 3 else B).float().transpose(-1, -2)
    Ct = (C[:, None] if C.dim() == 3 else C).float().transpose(-1, -2)

    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    if pad:
        u_p, delta_p = F.pad(u, (0, pad)), F.pad(delta, (0, pad))
        Bt, Ct = F.pad(Bt, (0, 0, 0, pad)), F.pad(Ct, (0, 0, 0, pad))
    else:
        u_p, delta_p = u, delta

    dA = delta_p[..., None] * A[:, None, :]  # [b, d, L, n] log-decay per step
    x = (delta_p * u_p)[..., None] * Bt  # [b, d, L, n] input per step
    dA = dA.view(b, d, nc, T, n)
    x = x.view(b, d, nc, T, n)
    G = dA.cumsum(dim=3)  # [b, d, c, T, n]

    # 2. intra-chunk: h_local[t] = sum_{s<=t} exp(G_t - G_s) x_s
    mask = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()
    seg = G[:, :, :, :, None, :] - G[:, :, :, None, :, :]  # [b, d, c, t, s, n]
    seg = seg.masked_fill(~mask[:, :, None], float("-inf"))
    h = (seg.exp() * x[:, :, :, None, :, :]).sum(dim=4)  # [b, d, c, T, n]

    # 3. inter-chunk state passing
    decay_chunk = G[:, :, :, -1, :].exp()  # [b, d, c, n]
    h_end = h[:, :, :, -1, :]
    S = (
        torch.zeros(b, d, n, device=u.device, dtype=torch.float32)
        if initial_state is None
        else initial_state.float()
    )
    S_in = []
    for c in range(nc):
        S_in.append(S)
        S = decay_chunk[:, :, c] * S + h_end[:, :, c]
    S_enter = torch.stack(S_in, dim=2)  # [b, d, c, n]

    # 4. add the carried state and read out
    h = h + G.exp() * S_enter[:, :, :, None, :]
    y = (h.view(b, d, nc * T, n) * Ct).sum(-1)[:, :, :l]
    if D is not None:
        y = y + D.float()[:, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, S) if return_last_state else y


# ----------------------------------------------------------------------------- the layer
class MambaConfig(SequenceMixerConfig):
    type: Literal["mamba"] = "mamba"
    d_state: int = Field(4, ge=1, description="SSM state size per channel (MAD-Lab: 4)")
    d_conv: int = Field(4, ge=1, description="causal depthwise conv kernel (MAD-Lab: 4)")
    expand: int = Field(2, ge=1, description="inner width = expand * d_model (MAD-Lab: 2)")
    dt_rank: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="rank of the dt projection ('auto': ceil(d_model / 16))"
    )
    dt_min: float = Field(0.001, gt=0.0, description="dt init range, lower end")
    dt_max: float = Field(0.1, gt=0.0, description="dt init range, upper end")
    dt_init_floor: float = Field(1e-4, gt=0.0)
    conv_bias: bool = True
    bias: bool = Field(False, description="bias in the in/out projections")
    chunk_size: int = Field(16, ge=1, description="chunk length of the parallel scan")

    def check(self, d_model: int) -> None:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")


@register(MambaConfig)
class Mamba(SequenceMixer):
    """Mamba-1 selective SSM: gated conv + input-dependent diagonal state-space scan."""

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
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1)  # S4D-real
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(E))

    def _split(self, xc: torch.Tensor):
        N, R = self.cfg.d_state, self.dt_rank
        dt, Bm, Cm = self.x_proj(xc).split([R, N, N], dim=-1)
        return dt @ self.dt_proj.weight.t(), Bm, Cm  # dt before bias + softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, E]
        xc = F.silu(causal_depthwise_conv(xs, self.conv1d.weight, self.conv1d.bias))
        dt, Bm, Cm = self._split(xc)
        y = selective_scan(
            xc.transpose(1, 2),
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            Bm.transpose(1, 2),
            Cm.transpose(1, 2),
            self.D,
            z=z.transpose(1, 2),
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            chunk_size=self.cfg.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))

    def init_state(self, batch_size: int, device=None, dtype=None):
        dtype = dtype or torch.float32
        return {
            "conv": torch.zeros(batch_size, self.d_inner, self.cfg.d_conv, device=device, dtype=dtype),
            "ssm": torch.zeros(
                batch_size, self.d_inner, self.cfg.d_state, device=device, dtype=torch.float32
            ),
        }

    def step(self, x_t: torch.Tensor, state):
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)  # [B, E]
        xc, window = conv_step(state["conv"], xs, self.conv1d.weight, self.conv1d.bias)
        xc = F.silu(xc)
        dt, Bm, Cm = self._split(xc)
        dt = F.softplus((dt + self.dt_proj.bias).float())  # [B, E]
        A = -torch.exp(self.A_log.float())  # [E, N]
        h = torch.exp(dt[:, :, None] * A) * state["ssm"] + (dt * xc.float())[:, :, None] * Bm.float()[
            :, None, :
        ]
        y = (h * Cm.float()[:, None, :]).sum(-1) + self.D.float() * xc.float()
        y = (y * F.silu(z.float())).to(x_t.dtype)
        return self.out_proj(y), {"conv": window, "ssm": h}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # Per (channel, state): decay exp+mul, input mul, update mul+add, readout mul+add (~7),
        # plus the intra-chunk exp(segsum) mixing of the parallel form (~3 per chunk position).
        T = min(self.cfg.chunk_size, seq_len)
        return float(self.d_inner * self.cfg.d_state * (7 + 3 * T / 2))
