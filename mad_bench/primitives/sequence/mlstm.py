"""mLSTM: the matrix-memory cell of xLSTM (Beck et al., 2024, "xLSTM: Extended Long Short-Term
Memory"), as a multi-head sequence mixer.

    x_c          = silu(causal_depthwise_conv(x))  (kernel d_conv; x_c = x when d_conv = 0)
    q, k, v      = x_c W_q, x_c W_k / sqrt(d_h), x W_v          (per head, d_h = d_model / heads)
    i~, f~       = x W_i + b_i, x W_f + b_f                      (one scalar per head and step)
    log f_t      = logsigmoid(f~_t)                              (sigmoid forget gate, log space)
    m_t          = max(log f_t + m_{t-1}, i~_t)                  (stabiliser, m_0 = 0)
    i'_t, f'_t   = exp(i~_t - m_t), exp(log f_t + m_{t-1} - m_t)  (exponential input gate)
    C_t          = f'_t C_{t-1} + i'_t v_t k_t^T                 (matrix memory, [d_h, d_h])
    n_t          = f'_t n_{t-1} + i'_t k_t                        (normaliser)
    h_t          = C_t q_t / max(|n_t^T q_t|, exp(-m_t))
    y            = (sigmoid(x W_o + b_o) * GroupNorm_heads(h)) W_out   (output gate)

The stabiliser cancels: ``h_t`` equals the unstabilised ``C~_t q_t / max(|n~_t^T q_t|, 1)``
(``C~ = exp(m) C``) for any choice of ``m``, so the parallel form may pick its own stabilisers
(and ``m`` carries no gradient). The parallel form is the op :func:`mad_bench.ops.mlstm.mlstm`:
stabilised quadratic attention within chunks of ``chunk_size`` plus the (C, n, m) state carried
between them, on both its torch and Triton paths.

The whole mixer computes in fp32, also under bf16 autocast: with bf16 projections the layer's
gradient at initialisation is dominated by rounding (on MAD's selective-copying baseline the
bf16 gradient of ``qk.weight`` was 0.35x the fp32 one, and a vmapped ensemble and a per-member
loop disagreed by 4x), while in fp32 the two agree to 1e-4. At torch's default fp32 matmul
precision that cost 3x on an H200 (IEEE fp32 GEMMs and kernel dots: 49.3 vs 16.4 ms a step);
at TF32 the step is 18.1 ms and the engine check still passes (gradient error 1.6e-2), so a
bf16 run of a model holding this layer takes its fp32 matmuls at TF32 (``tf32_in_bf16_runs``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.mlstm import MLSTMConfig
from ...ops import causal_conv, mlstm
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ...ops.utils import upcast
from ..base import SequenceMixer
from ..registry import register


@register(MLSTMConfig)
class MLSTM(SequenceMixer):
    """xLSTM mLSTM: multi-head matrix memory with exponential gating and a stabiliser."""

    tf32_in_bf16_runs = True  # checked on the H200: see the module docstring

    ops = (causal_conv, mlstm)

    def __init__(self, cfg: MLSTMConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        H = cfg.n_heads
        self.n_heads, self.head_dim = H, d_model // H
        if cfg.d_conv > 0:
            self.conv1d = nn.Conv1d(d_model, d_model, cfg.d_conv, groups=d_model, bias=True)
        self.qk = nn.Linear(d_model, 2 * d_model, bias=cfg.bias)
        self.v = nn.Linear(d_model, d_model, bias=cfg.bias)
        self.gates = nn.Linear(d_model, 2 * H, bias=True)  # [i~ | f~]
        self.o = nn.Linear(d_model, d_model, bias=True)
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.out = nn.Linear(d_model, d_model, bias=cfg.bias)
        with torch.no_grad():  # xLSTM's gate init: zero weights, i bias ~ N(0, 0.1), f bias 3..6
            self.gates.weight.zero_()
            self.gates.bias[:H].normal_(0.0, 0.1)
            self.gates.bias[H:].copy_(torch.linspace(*cfg.forget_bias_init, H))
        self.gates.bias._no_reinit = True  # the LM's init zeroes Linear biases, not the gate biases

    def _project(self, x: torch.Tensor, xc: torch.Tensor):
        """x, xc [..., D] -> q, k, v [..., H, d_h], i~, log f [..., H], o [..., D]."""
        H, dh = self.n_heads, self.head_dim
        q, k = self.qk(xc).chunk(2, dim=-1)
        v = self.v(x)
        i_gate, f_gate = upcast(self.gates(x)).chunk(2, dim=-1)
        shape = x.shape[:-1] + (H, dh)
        q, k, v = q.view(shape), k.view(shape) / math.sqrt(dh), v.view(shape)
        return q, k, v, i_gate, F.logsigmoid(f_gate), torch.sigmoid(self.o(x))

    def _out(self, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """h [..., H, d_h] -> per-head layer norm (group norm), output gate, projection."""
        h = upcast(h)
        h = (h - h.mean(-1, keepdim=True)) * torch.rsqrt(
            h.var(-1, keepdim=True, unbiased=False) + self.cfg.norm_eps
        )
        h = h.flatten(-2) * upcast(self.norm_weight)
        return self.out((upcast(o) * h).to(o.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # fp32: see the module docstring
            return self._forward(upcast(x)).to(x.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x
        if self.cfg.d_conv > 0:
            xc = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, "silu", impl=self.cfg.impl)
        q, k, v, i_gate, log_f, o = self._project(x, xc)
        args = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                i_gate.transpose(1, 2), log_f.transpose(1, 2))
        h = mlstm.mlstm(*args, chunk_size=self.cfg.chunk_size, impl=self.cfg.impl)
        return self._out(h.transpose(1, 2).to(x.dtype), o)

    def init_state(self, batch_size: int, device=None, dtype=None):
        H, dh = self.n_heads, self.head_dim
        kind = self.state_kind(device, dtype)
        state = {
            "C": torch.zeros(batch_size, H, dh, dh, **kind),  # [k dim, v dim]
            "n": torch.zeros(batch_size, H, dh, **kind),
            "m": torch.zeros(batch_size, H, **kind),
        }
        if self.cfg.d_conv > 0:
            state["conv"] = torch.zeros(batch_size, self.d_model, self.cfg.d_conv, **kind)
        return state

    def step(self, x_t: torch.Tensor, state):
        with torch.autocast(x_t.device.type, enabled=False):  # fp32, as forward
            y, new = self._step(upcast(x_t), state)
        return y.to(x_t.dtype), new

    def _step(self, x_t: torch.Tensor, state):
        new = {}
        xc = x_t
        if self.cfg.d_conv > 0:
            xc, new["conv"] = causal_conv1d_step(x_t, state["conv"], self.conv1d.weight,
                                                 self.conv1d.bias)
            xc = F.silu(xc)
        q, k, v, i_gate, log_f, o = self._project(x_t, xc)  # q, k, v [B, H, dh]; gates [B, H]
        q, k, v = upcast(q), upcast(k), upcast(v)
        m_prev = state["m"]
        m = torch.maximum(log_f + m_prev, i_gate)
        f_ = (log_f + m_prev - m).exp()
        i_ = (i_gate - m).exp()
        kv = k[..., :, None] * v[..., None, :]
        C = f_[..., None, None] * state["C"] + i_[..., None, None] * kv
        n = f_[..., None] * state["n"] + i_[..., None] * k
        num = (q[..., None, :] @ C)[..., 0, :]  # [B, H, dv]
        den = torch.maximum((q * n).sum(-1).abs(), (-m).exp())
        h = num / den[..., None]
        new.update(C=C, n=n, m=m)
        return self._out(h.to(x_t.dtype), o), new

    def mixing_flops_per_token(self, seq_len: int) -> float:
        # per head: intra-chunk q k^T, weights and S v (~2 T (2 d_h + 2)), carried-state readout
        # q C and q n (2 d_h^2 + 2 d_h), chunk-state build (2 d_h^2); plus the norm (~8 D).
        T = min(self.cfg.chunk_size, seq_len)
        dh = self.head_dim
        per_head = 2 * T * (2 * dh + 2) + 4 * dh * dh + 2 * dh
        return float(self.n_heads * per_head + 8 * self.d_model)
