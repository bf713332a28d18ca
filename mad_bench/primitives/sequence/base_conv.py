"""BaseConv: a gated convolution (Arora et al., 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models", sec. 5 / appendix: the simplest gated-convolution "BaseConv"), as in
Zoology's ``zoology/mixers/base_conv.py``.

    c = conv(x)                       short: causal depthwise conv of length ``kernel_size`` (bias)
                                      long:  implicit long filter h (over max_len, below) with
                                             the skip Zoology adds: c_t = sum_{s<=t} h_{t-s} x_s + x_t
    y = act(c) . act(x W + b) + x     (act: identity, Zoology's default; or silu)

The ``+ x`` is Zoology's (the layer has its own residual besides the block's). Zoology's
figure-2 "base_conv" alternates a short (kernel 3) and a long layer, kernel_size [3, -1]; its
Based model uses the short one before each linear-attention layer. ``step`` keeps the last
``kernel_size - 1`` inputs (short) or every input so far (long: the filter is not recurrent).

The long filter is Zoology's current ``ImplicitLongConvolution`` (zoology/mixers/convolution.py,
what its paper configs run): a 2-layer ReLU MLP of fixed positional features,

    h_t = W_2 relu(W_1 p_t + b_1) + b_2      p_t = [t, cos(w_t f), -sin(w_t f)]  (3 features)

with hidden width ``filter_order`` (Zoology's d_hidden, 16) and no decay window. (An older
Zoology commit had a Hyena-style filter: a sine FFN times an exponential decay.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.base_conv import BaseConvConfig
from ...ops import causal_conv, fft_conv
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ...ops.fft_conv import fft_causal_conv
from ..base import SequenceMixer
from ..registry import register
from .hyena import positional_features


class ImplicitFilter(nn.Module):
    """Zoology's implicit long filter h[t, c] for t < max_len: Linear -> ReLU -> Linear of
    fixed positional features (a buffer: Zoology's z does not train)."""

    def __init__(self, channels: int, max_len: int, hidden: int, emb_dim: int = 3):
        super().__init__()
        self.register_buffer("z", positional_features(max_len, emb_dim), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, L: int) -> torch.Tensor:  # -> [L, channels]
        return self.mlp(self.z[:L])


@register(BaseConvConfig)
class BaseConv(SequenceMixer):
    """BaseConv: a (short or implicit long) convolution gated by a linear projection, plus x.

    The short conv keeps nn.Conv1d's parameters but runs :func:`~mad_bench.ops.causal_conv.causal_conv1d`
    (the same causal conv, and under the engine's vmap + autocast it computes in bf16 as it does
    per member; nn.Conv1d under vmap is not autocast)."""

    ops = (causal_conv, fft_conv)

    def __init__(self, cfg: BaseConvConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        self.projection = nn.Linear(d_model, d_model)
        if cfg.conv == "short":
            self.conv = nn.Conv1d(d_model, d_model, cfg.kernel_size, groups=d_model)  # its parameters
        else:
            self.filter = ImplicitFilter(d_model, max_len, cfg.filter_order)

    def _gate(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        p = self.projection(x)
        if self.cfg.use_act:
            c, p = F.silu(c), F.silu(p)
        return c * p + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if L > self.max_len and self.cfg.conv == "long":
            raise ValueError(f"base-conv input length {L} exceeds max_len={self.max_len}")
        if self.cfg.conv == "short":
            return self._gate(causal_conv1d(x, self.conv.weight, self.conv.bias, impl=self.cfg.impl), x)
        u = x.transpose(1, 2)  # [B, D, L]
        c = fft_causal_conv(u, self.filter(L).T) + u
        return self._gate(c.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        n = self.cfg.kernel_size - 1 if self.cfg.conv == "short" else self.max_len
        hist = torch.zeros(batch_size, self.d_model, n, **self.state_kind(device, dtype))
        return {"hist": hist, "pos": 0}

    def step(self, x_t: torch.Tensor, state):
        pos, hist = state["pos"], state["hist"]
        if self.cfg.conv == "short":
            c, hist = causal_conv1d_step(x_t, hist, self.conv.weight, self.conv.bias)
            return self._gate(c, x_t), {"hist": hist, "pos": pos + 1}
        if pos >= self.max_len:
            raise ValueError(f"base-conv step beyond max_len={self.max_len}")
        hist = hist.clone()
        hist[..., pos] = x_t.to(hist.dtype)
        h = self.filter(pos + 1).T.flip(-1)  # [D, pos+1]: h[t - s] for s = 0..t
        c = (hist[..., : pos + 1].to(h.dtype) * h).sum(-1) + x_t
        return self._gate(c, x_t), {"hist": hist, "pos": pos + 1}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        if self.cfg.conv == "short":
            return 3.0 * self.d_model
        return self.d_model * (15.0 * math.log2(2 * max(seq_len, 1)) + 4.0)
