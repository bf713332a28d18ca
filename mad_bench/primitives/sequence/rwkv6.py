"""RWKV-6 "Finch" time mixing (Peng et al., 2024, "Eagle and Finch: RWKV with Matrix-Valued
States and Dynamic Recurrence").

Data-dependent token shift (ddlerp), with dx_t = x_{t-1} - x_t (x_{-1} = 0):

    m       = tanh((x + dx . mu_x) A) B_{w,k,v,r,g}        (low rank: mix_rank)
    x_*     = x + dx . (mu_* + m_*)                       for * in w, k, v, r, g
    r, k, v = x_r W_r, x_k W_k, x_v W_v ;  g = silu(x_g W_g)
    w_t     = exp(-exp(d + tanh(x_w C) E))                (per-channel decay in (0, 1))

Per head (head size K = head_dim), with the bonus u for the current token:

    S_t = diag(w_t) S_{t-1} + k_t^T v_t
    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)
    y   = (GroupNorm_H(o) . g) W_o

The parallel form is chunked in log space: within a chunk the decays enter as
exp(a^excl_t - a_s) <= 1 for s < t (a = in-chunk cumulative log decay), formed explicitly per
channel ([chunk, chunk, K] per chunk: exact and stable); chunks pass the state S through a short
loop over chunks. ``step`` keeps S [B, H, K, K] and the previous token for the shift.

Defaults follow MAD-Lab's ``rwkv6-time-mixer.yml`` (head_dim 16, attention width = d_model,
head_size_divisor 8 -> GroupNorm eps 64e-5) and RWKV-6's low-rank widths (32 for the five mix
terms, 64 for the decay); initialisation is RWKV-6's for a single layer (layer 0 of 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from ...configs.primitives.rwkv6 import RWKV6Config
from ...ops import rwkv6
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register


@register(RWKV6Config)
class RWKV6(SequenceMixer):
    """RWKV-6 time mixing: data-dependent shift and decay, matrix-valued per-head state."""

    ops = (rwkv6,)

    def __init__(self, cfg: RWKV6Config, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        D = d_model
        self.head_dim = cfg.head_dim
        self.n_heads = D // cfg.head_dim
        with torch.no_grad():
            ddd = torch.arange(D, dtype=torch.float32) / D
            self.maa_x = nn.Parameter(1.0 - ddd)
            self.maa_wkvrg = nn.Parameter(
                torch.stack([1.0 - ddd] * 3 + [1.0 - ddd.pow(0.5)] * 2)
            )  # order: w, k, v, r, g
            self.maa_A = nn.Parameter(torch.empty(D, 5 * cfg.mix_rank).uniform_(-1e-4, 1e-4))
            self.maa_B = nn.Parameter(torch.empty(5, cfg.mix_rank, D).uniform_(-1e-4, 1e-4))
            n = torch.arange(D, dtype=torch.float32)
            self.decay = nn.Parameter(-6 + 5 * (n / max(D - 1, 1)) ** 0.7)
            self.decay_A = nn.Parameter(torch.empty(D, cfg.decay_rank).uniform_(-1e-4, 1e-4))
            self.decay_B = nn.Parameter(torch.empty(cfg.decay_rank, D).uniform_(-1e-4, 1e-4))
            zigzag = ((n + 1) % 3 - 1) * 0.1
            self.bonus = nn.Parameter(zigzag.reshape(self.n_heads, self.head_dim))
        self.receptance = nn.Linear(D, D, bias=False)
        self.key = nn.Linear(D, D, bias=False)
        self.value = nn.Linear(D, D, bias=False)
        self.gate = nn.Linear(D, D, bias=False)
        self.output = nn.Linear(D, D, bias=False)
        self.ln_x = nn.GroupNorm(self.n_heads, D, eps=1e-5 * cfg.head_size_divisor**2)

    def _inputs(self, x: torch.Tensor, x_prev: torch.Tensor):
        """x, x_prev: [..., D] -> r, k, v, g, logw (each [..., D])."""
        dx = x_prev - x
        xxx = x + dx * self.maa_x
        m = torch.tanh(xxx @ self.maa_A)
        m = torch.einsum("...fr,frd->...fd", m.unflatten(-1, (5, -1)), self.maa_B)
        m = m + self.maa_wkvrg  # [..., 5, D]
        xw, xk, xv, xr, xg = (x + dx * m[..., i, :] for i in range(5))
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        g = F.silu(self.gate(xg))
        logw = -torch.exp(self.decay + torch.tanh(xw @ self.decay_A) @ self.decay_B)
        return r, k, v, g, logw

    def _out(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # o, g: [..., D]
        shape = o.shape
        o = self.ln_x(o.reshape(-1, self.d_model)).reshape(shape)
        return self.output(o * g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        x_prev = F.pad(x, (0, 0, 1, -1))
        r, k, v, g, logw = self._inputs(x, x_prev)
        heads = lambda t: t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        o = rwkv6.wkv6(heads(r), heads(k), heads(v), heads(logw), self.bonus,
                       chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        return self._out(o.transpose(1, 2).reshape(B, L, D), g)

    def init_state(self, batch_size: int, device=None, dtype=None):
        kind = self.state_kind(device, dtype)
        H, K = self.n_heads, self.head_dim
        return {
            "S": torch.zeros(batch_size, H, K, K, **kind),
            "x_prev": torch.zeros(batch_size, self.d_model, **kind),
        }

    def step(self, x_t: torch.Tensor, state):
        B = x_t.shape[0]
        r, k, v, g, logw = self._inputs(x_t, state["x_prev"].to(x_t.dtype))
        hd = lambda t: upcast(t).view(B, self.n_heads, self.head_dim)  # noqa: E731
        r, k, v, w = hd(r), hd(k), hd(v), hd(logw).exp()
        S = state["S"]
        kv = k[..., :, None] * v[..., None, :]  # [B, H, K, V]
        o = (r[..., None, :] @ (S + upcast(self.bonus)[..., None] * kv)).squeeze(-2)
        S_new = w[..., None] * S + kv
        y = self._out(o.reshape(B, self.d_model).to(x_t.dtype), g)
        return y, {"S": S_new, "x_prev": x_t}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # state update (decay + outer product) and readout per head, plus the low-rank terms
        K = self.head_dim
        D = self.d_model
        lowrank = 4.0 * D * 5 * self.cfg.mix_rank + 4.0 * D * self.cfg.decay_rank
        return 6.0 * D * K + lowrank
