"""H3 (Fu, Dao et al., 2023, "Hungry Hungry Hippos: Towards Language Modeling with State Space
Models", sec. 3.1, eq. 3), as in Zoology's ``zoology/mixers/h3/h3.py``.

    q, k, v = x W_q + b_q, x W_k + b_k, x W_v + b_v
    k       = SSM_shift(k) + D_k . k           shift SSM = a learned causal FIR of length N per channel
    y[g, j] = sum_i q[g, i] . ( SSM_diag,g(k[g, i] . v[g, j]) + D_g k[g, i] . v[g, j] )
    out     = y W_o + b_o

In heads g of ``head_dim`` channels the k v^T outer product runs through a diagonal SSM (S4D,
Gu et al., 2022, "On the Parameterization and Initialization of Diagonal State Space Models"):
N/2 complex modes ``A_n = -exp(a_n) + i b_n`` (S4D-Lin init ``-1/2 + i pi n``), bilinear
discretisation with step ``dt_g`` (log-uniform in [1e-3, 1e-1]),

    dA = (1 + dt A / 2) / (1 - dt A / 2),   dB = dt / (1 - dt A / 2),   x_t = dA x_{t-1} + dB u_t,
    y_t = 2 Re(C x_t),      so the kernel is K_l = 2 Re(sum_n C_n dB_n dA_n^l).

The parallel form builds K (Vandermonde) and convolves by FFT; ``step`` runs the shift buffer
and the complex diagonal recurrence: the state is ``d_model (N - 1)`` shift taps plus
``d_model head_dim N`` SSM numbers. Defaults are Zoology's class defaults: d_state 64,
head_dim 1; its figure-2 config uses ``d_state = seq_len`` (``d_state: null`` here) and head_dim 2. The output's channel
order is head-major (Zoology's is j-major): a permutation of W_o's columns, the same family.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...configs.primitives.h3 import H3Config
from ...ops import fft_conv
from ...ops.fft_conv import fft_causal_conv
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register
from .hyena import outer_product_conv


@register(H3Config)
class H3(SequenceMixer):
    """H3: shift-SSM keys, diagonal-SSM over per-head k v^T outer products, read out by q."""

    ops = (fft_conv,)

    def __init__(self, cfg: H3Config, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        N, G = cfg.d_state or max_len + max_len % 2, d_model // cfg.head_dim
        self.N, self.heads = N, G
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model) for _ in range(3))
        bound = 1.0 / math.sqrt(N)  # torch's Conv1d init, as Zoology's shift kernel
        self.shift_C = nn.Parameter(torch.empty(d_model, N).uniform_(-bound, bound))
        self.shift_D = nn.Parameter(torch.randn(d_model))
        self.log_dt = nn.Parameter(
            torch.rand(G) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        self.log_neg_A_re = nn.Parameter(torch.full((G, N // 2), math.log(0.5)))
        self.A_im = nn.Parameter(math.pi * torch.arange(N // 2, dtype=torch.float32).repeat(G, 1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(G, N // 2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(G))
        self.out_proj = nn.Linear(d_model, d_model)

    def _discrete(self):
        """``dA``, ``C dB`` of the diagonal SSM, complex ``[G, N/2]``."""
        A = torch.complex(-self.log_neg_A_re.exp(), self.A_im)
        dtA = A * self.log_dt.exp()[:, None]
        dA = (1 + dtA / 2) / (1 - dtA / 2)
        return dA, torch.view_as_complex(self.C) * self.log_dt.exp()[:, None] / (1 - dtA / 2)

    def _kernel(self, L: int) -> torch.Tensor:  # [G, L]
        dA, CdB = self._discrete()
        power = torch.exp(dA.log()[..., None] * torch.arange(L, device=dA.device))
        return 2 * (CdB[..., None] * power).sum(1).real

    def _shift_keys(self, k: torch.Tensor) -> torch.Tensor:  # [B, D, L]
        L = k.shape[-1]
        taps = self.shift_C[:, :L]
        taps = torch.nn.functional.pad(taps, (0, L - taps.shape[1]))
        return fft_causal_conv(k, taps) + self.shift_D[:, None] * k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (p(x).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        k = self._shift_keys(k)
        y = outer_product_conv(q, k, v, self._kernel(x.shape[1]), self.D, self.cfg.head_dim)
        return self.out_proj(y.transpose(1, 2))

    def init_state(self, batch_size: int, device=None, dtype=None):
        N, n = self.N, self.cfg.head_dim
        kind = self.state_kind(device, dtype)
        return {"shift": torch.zeros(batch_size, self.d_model, N - 1, **kind),
                "ssm": torch.zeros(batch_size, self.heads, n, n, N // 2, 2, **kind)}

    def step(self, x_t: torch.Tensor, state):
        B, n = x_t.shape[0], self.cfg.head_dim
        q, k, v = self.q_proj(x_t), self.k_proj(x_t), self.v_proj(x_t)
        window = torch.cat([state["shift"], upcast(k[..., None])], dim=-1)  # [B, D, N] oldest first
        k = (window * self.shift_C.flip(-1)).sum(-1) + self.shift_D * k
        q, k, v = (t.view(B, self.heads, n) for t in (q, k, v))
        kv = k[..., :, None] * v[..., None, :]  # [B, G, i, j]
        dA, CdB = self._discrete()
        dA, CdB = dA[:, None, None], CdB[:, None, None]  # [G, 1, 1, N/2]
        x = torch.view_as_complex(state["ssm"]) * dA + kv[..., None]
        y = 2 * (CdB * x).sum(-1).real + kv * self.D[:, None, None]
        out = (q[..., None] * y).sum(2).reshape(B, self.d_model)
        return self.out_proj(out), {"shift": window[..., 1:].clone(),
                                    "ssm": torch.view_as_real(x).clone()}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        fft = 15.0 * math.log2(2 * max(seq_len, 1))
        n = self.cfg.head_dim
        return self.d_model * (fft + 2.0) + self.d_model * n * (fft + 4.0)
