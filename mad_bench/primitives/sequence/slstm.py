"""sLSTM: the scalar-memory cell of xLSTM (Beck et al., 2024, "xLSTM: Extended Long Short-Term
Memory"), as a multi-head sequence mixer.

Per head (d_h = d_model / heads units), with block-diagonal recurrent weights R (one
``[d_h, 4 d_h]`` block per head):

    [i~, f~, z~, o~]_t = W x_t + R h_{t-1} + b
    log f_t  = logsigmoid(f~_t)                         (sigmoid forget gate, log space)
    m_t      = max(log f_t + m_{t-1}, i~_t)             (stabiliser; m_0 = -inf)
    i'_t     = exp(i~_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)   (exponential input gate)
    c_t      = f'_t c_{t-1} + i'_t tanh(z~_t)           (cell)
    n_t      = f'_t n_{t-1} + i'_t                      (normaliser)
    h_t      = sigmoid(o~_t) * c_t / n_t
    y        = GroupNorm_heads(h) W_out

``c / n`` does not depend on the stabiliser (both carry the factor ``exp(-m)``), so ``m``
carries no gradient. With ``m_0 = -inf`` the first step has ``i' = 1``, and then ``n_t >= 1``
for every t (one of ``f'``, ``i'`` is 1 at each step), so the division is always safe.

The recurrence through ``h_{t-1}`` is inherently sequential: ``forward`` loops over time, with
the input projections ``W x_t`` precomputed for all t and one batched matmul per step.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...configs.primitives.slstm import SLSTMConfig
from ...ops import slstm
from ...ops.slstm import slstm_cell
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register


@register(SLSTMConfig)
class SLSTM(SequenceMixer):
    """xLSTM sLSTM: scalar memory, exponential gating, block-diagonal recurrence (sequential)."""

    ops = (slstm,)

    def __init__(self, cfg: SLSTMConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        H = cfg.n_heads
        dh = d_model // H
        self.n_heads, self.head_dim = H, dh
        self.W = nn.Linear(d_model, 4 * d_model, bias=True)  # per head: [i | f | z | o] x d_h
        self.R = nn.Parameter(torch.randn(H, dh, 4 * dh) / math.sqrt(dh))
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.out = nn.Linear(d_model, d_model, bias=cfg.bias)
        with torch.no_grad():
            b = self.W.bias.view(H, 4, dh)
            b.zero_()
            b[:, 1] = torch.linspace(*cfg.forget_bias_init, H)[:, None]
        self.W.bias._no_reinit = True  # the LM's init zeroes Linear biases, not the gate biases

    def _wx(self, x: torch.Tensor) -> torch.Tensor:
        """x[..., D] -> W x + b as [..., H, 4 d_h] (fp32)."""
        return upcast(self.W(x)).view(*x.shape[:-1], self.n_heads, 4 * self.head_dim)

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        """h[..., H, d_h] (fp32) -> per-head layer norm, projection."""
        h = (h - h.mean(-1, keepdim=True)) * torch.rsqrt(
            h.var(-1, keepdim=True, unbiased=False) + self.cfg.norm_eps
        )
        return h.flatten(-2) * upcast(self.norm_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = slstm.slstm_scan(self._wx(x), upcast(self.R), impl=self.cfg.impl)  # [B, L, H, d_h]
        return self.out(self._out(h).to(x.dtype))

    def _zeros(self, batch_size: int, device=None, dtype=None):
        shape = (self.n_heads, batch_size, self.head_dim)
        kind = self.state_kind(device, dtype)
        zeros = lambda: torch.zeros(shape, **kind)  # noqa: E731
        return zeros(), zeros(), zeros(), torch.full(shape, float("-inf"), **kind)

    def init_state(self, batch_size: int, device=None, dtype=None):
        h, c, n, m = self._zeros(batch_size, device, dtype)
        return {"h": h, "c": c, "n": n, "m": m}

    def step(self, x_t: torch.Tensor, state):
        wx = self._wx(x_t).transpose(0, 1)  # [H, B, 4 d_h]
        prev = (state["h"], state["c"], state["n"], state["m"])
        h, c, n, m = slstm_cell(wx, upcast(self.R), prev)
        y = self.out(self._out(h.transpose(0, 1)).to(x_t.dtype))
        return y, {"h": h, "c": c, "n": n, "m": m}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # recurrent matmul (2 d_h * 4 d_h per head) + ~20 pointwise ops per unit + norm (~8 D)
        dh = self.head_dim
        return float(self.n_heads * 8 * dh * dh + 28 * self.d_model)
