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
d_conv 4. The parallel form is the chunked SSD algorithm (:func:`ssd_chunked`); ``step`` runs
the recurrence above.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ...kernels import chunked_linear_attention as cla
from ...kernels.dispatch import resolve_impl
from ..base import SequenceMixer, SequenceMixerConfig
from ..registry import register
from .mamba import causal_depthwise_conv, conv_step, init_dt_bias


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan, torch reference.

    ``x[b, l, h, p]``, ``dt[b, l, h]`` (positive), ``A[h]`` (negative), ``B, C[b, l, g, n]``,
    ``initial_state[b, h, p, n]``. Returns ``(y[b, l, h, p], h_last[b, h, p, n])`` for
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t`` (no D term). fp32 inside.

    Algorithm (the SSD block decomposition; the decay is a scalar per head and step, so the
    within-chunk decay matrix is ``[T, T]`` per head): with ``a_t = dt_t A`` and, per chunk of
    T steps, ``G_t = sum_{r <= t} a_r`` (cumulative log-decay),

    1. diagonal blocks: ``y_t = sum_{s <= t} (C_t . B_s) exp(G_t - G_s) dt_s x_s`` — masked
       ``exp(segsum)`` times the ``C B^T`` scores, batched matmuls over all chunks at once
       (the other triangle is ``-inf`` before ``exp``: nothing overflows);
    2. chunk states: ``S_local = sum_s exp(G_end - G_s) dt_s x_s B_s^T``;
    3. inter-chunk recurrence ``S_c = exp(G_end) S_{c-1} + S_local(c-1)`` (loop over chunks);
    4. off-diagonal blocks: ``y_t += exp(G_t) S_c C_t``.

    The sequence is zero-padded to a multiple of T (padded steps: dt = 0, i.e. decay 1 and no
    input, so the final state is exact).
    """
    dtype_in = x.dtype
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    x, dt, A, B, C = x.float(), dt.float(), A.float(), B.float(), C.float()
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    if g != h:  # share each group's B, C across its heads
        B = B.repeat_interleave(h // g, dim=2)
        C = C.repeat_interleave(h // g, dim=2)
    # chunked, head-major layouts
    xs = (x * dt[..., None]).view(b, nc, T, h, p).permute(0, 3, 1, 2, 4)  # [b, h, c, T, p]
    Bc = B.view(b, nc, T, h, n).permute(0, 3, 1, 2, 4)  # [b, h, c, T, n]
    Cc = C.view(b, nc, T, h, n).permute(0, 3, 1, 2, 4)
    a = (dt * A).view(b, nc, T, h).permute(0, 3, 1, 2)  # [b, h, c, T]
    G = a.cumsum(dim=-1)

    # 1. diagonal blocks
    mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    seg = (G[..., :, None] - G[..., None, :]).masked_fill(~mask, float("-inf"))
    scores = (Cc @ Bc.transpose(-1, -2)) * seg.exp()  # [b, h, c, T, T]
    y = scores @ xs  # [b, h, c, T, p]

    # 2. chunk-local end states  [b, h, c, p, n]
    decay_to_end = (G[..., -1:] - G).exp()  # [b, h, c, T]
    S_local = (xs * decay_to_end[..., None]).transpose(-1, -2) @ Bc

    # 3. inter-chunk recurrence
    decay_chunk = G[..., -1].exp().unbind(2)  # c x [b, h]
    S_local = S_local.unbind(2)
    S = (
        torch.zeros(b, h, p, n, device=x.device, dtype=torch.float32)
        if initial_state is None
        else initial_state.float()
    )
    S_in = []
    for c in range(nc):
        S_in.append(S)
        S = decay_chunk[c][..., None, None] * S + S_local[c]
    S_enter = torch.stack(S_in, dim=2)  # [b, h, c, p, n]

    # 4. off-diagonal blocks
    y = y + (Cc @ S_enter.transpose(-1, -2)) * G.exp()[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(b, nc * T, h, p)[:, :l]
    return y.to(dtype_in), S


class Mamba2Config(SequenceMixerConfig):
    type: Literal["mamba2"] = "mamba2"
    d_state: int = Field(16, ge=1, description="state size N per head")
    d_conv: int = Field(4, ge=1, description="causal depthwise conv kernel on x, B, C")
    expand: int = Field(2, ge=1, description="inner width E = expand * d_model")
    headdim: int = Field(32, ge=1, description="head dim P; must divide expand * d_model")
    n_groups: int = Field(1, ge=1, description="B/C groups; must divide the number of heads")
    A_init_min: float = Field(1.0, gt=0.0, description="A init: -U(A_init_min, A_init_max)")
    A_init_max: float = Field(16.0, gt=0.0)
    dt_min: float = Field(0.001, gt=0.0, description="dt init range, lower end")
    dt_max: float = Field(0.1, gt=0.0, description="dt init range, upper end")
    dt_init_floor: float = Field(1e-4, gt=0.0)
    norm_eps: float = Field(1e-5, gt=0.0)
    conv_bias: bool = True
    bias: bool = Field(False, description="bias in the in/out projections")
    chunk_size: int = Field(64, ge=1, description="chunk length of the parallel SSD")

    def width_defaults(self, d_model: int) -> dict:
        return {"headdim": self.fitted_heads("headdim", self.expand * d_model)}

    def check(self, d_model: int) -> None:
        inner = self.expand * d_model
        if inner % self.headdim:
            raise ValueError(
                f"headdim={self.headdim} must divide expand * d_model = {inner}"
            )
        heads = inner // self.headdim
        if heads % self.n_groups:
            raise ValueError(f"n_groups={self.n_groups} must divide the number of heads {heads}")
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")
        if self.A_init_min > self.A_init_max:
            raise ValueError(
                f"A_init_min={self.A_init_min} must be <= A_init_max={self.A_init_max}"
            )


@register(Mamba2Config)
class Mamba2(SequenceMixer):
    """Mamba-2 (SSD): multi-head selective SSM with scalar per-head decay and gated RMSNorm."""

    has_triton = True

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
        self.norm_weight = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=cfg.bias)

    def _gated_norm(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y.float() * F.silu(z.float())
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps)
        return y * self.norm_weight.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bsz, L, _ = x.shape
        E, H, P = self.d_inner, self.n_heads, self.cfg.headdim
        G, N = self.cfg.n_groups, self.cfg.d_state
        z, xBC, dt = self.in_proj(x).split([E, self.conv_dim, H], dim=-1)
        xBC = F.silu(causal_depthwise_conv(xBC, self.conv1d.weight, self.conv1d.bias))
        xs, Bm, Cm = xBC.split([E, G * N, G * N], dim=-1)
        dt = F.softplus((dt + self.dt_bias).float())
        A = -torch.exp(self.A_log.float())
        xh = xs.view(Bsz, L, H, P)
        if resolve_impl(self.cfg.impl, x) == "triton":  # SSD = chunk_simple_gla (q=C, k=B)
            y = cla.ssd(xh, dt, A, Bm.view(Bsz, L, G, N), Cm.view(Bsz, L, G, N), impl="triton")
        else:
            y, _ = ssd_chunked(
                xh, dt, A, Bm.view(Bsz, L, G, N), Cm.view(Bsz, L, G, N), self.cfg.chunk_size
            )
        y = y.float() + self.D.float()[:, None] * xh.float()
        y = self._gated_norm(y.reshape(Bsz, L, E), z)
        return self.out_proj(y.to(x.dtype))

    def init_state(self, batch_size: int, device=None, dtype=None):
        return {
            "conv": torch.zeros(
                batch_size, self.conv_dim, self.cfg.d_conv,
                device=device, dtype=dtype or torch.float32,
            ),
            "ssm": torch.zeros(
                batch_size, self.n_heads, self.cfg.headdim, self.cfg.d_state,
                device=device, dtype=torch.float32,
            ),
        }

    def step(self, x_t: torch.Tensor, state):
        Bsz = x_t.shape[0]
        E, H, P = self.d_inner, self.n_heads, self.cfg.headdim
        G, N = self.cfg.n_groups, self.cfg.d_state
        z, xBC, dt = self.in_proj(x_t).split([E, self.conv_dim, H], dim=-1)
        xBC, window = conv_step(state["conv"], xBC, self.conv1d.weight, self.conv1d.bias)
        xs, Bm, Cm = F.silu(xBC).split([E, G * N, G * N], dim=-1)
        dt = F.softplus((dt + self.dt_bias).float())  # [B, H]
        A = -torch.exp(self.A_log.float())
        xh = xs.float().view(Bsz, H, P)
        Bh = Bm.float().view(Bsz, G, N).repeat_interleave(H // G, dim=1)  # [B, H, N]
        Ch = Cm.float().view(Bsz, G, N).repeat_interleave(H // G, dim=1)
        decay = torch.exp(dt * A)[..., None, None]
        h = decay * state["ssm"] + (dt[..., None] * xh)[..., None] * Bh[:, :, None, :]
        y = (h @ Ch[..., None])[..., 0] + self.D.float()[:, None] * xh  # [B, H, P]
        y = self._gated_norm(y.reshape(Bsz, E), z)
        return self.out_proj(y.to(x_t.dtype)), {"conv": window, "ssm": h}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # chunked SSD per head: C B^T scores and scores @ x over a chunk (2 T (N + P)), chunk
        # states and the carried-state readout (4 P N); plus the gated norm (~5 E).
        T = min(self.cfg.chunk_size, seq_len)
        N, P = self.cfg.d_state, self.cfg.headdim
        return float(self.n_heads * (2 * T * (N + P) + 4 * P * N) + 5 * self.d_inner)
