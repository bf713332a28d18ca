"""BaseConv: a gated convolution (Arora et al., 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models", sec. 5 / appendix: the simplest gated-convolution "BaseConv"), as in
Zoology's ``zoology/mixers/base_conv.py``.

    c = conv(x)                       short: causal depthwise conv of length ``kernel_size`` (bias)
                                      long:  implicit long filter h (Hyena's, over max_len) with
                                             the skip Zoology adds: c_t = sum_{s<=t} h_{t-s} x_s + x_t
    y = act(c) . act(x W + b) + x     (act: identity, Zoology's default; or silu)

The ``+ x`` is Zoology's (the layer has its own residual besides the block's). Zoology's
figure-2 "base_conv" alternates a short (kernel 3) and a long layer, kernel_size [3, -1]; its
Based model uses the short one before each linear-attention layer. ``step`` keeps the last
``kernel_size - 1`` inputs (short) or every input so far (long: the filter is not recurrent).
The long filter is Zoology's ``ImplicitLongConvolution``: an FFN of width 16 with two inner
layers and sine activations (frequency 1) over 3 positional features, times an exponential
decay window -- the same construction as ``hyena``'s filter, which it reuses. (Zoology also
creates a ``bias`` vector there that its forward never uses; it is left out.)
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..base import SequenceMixer, SequenceMixerConfig
from ..registry import register
from .hyena import HyenaConfig, HyenaFilter, fft_causal_conv


class BaseConvConfig(SequenceMixerConfig):
    type: Literal["base-conv"] = "base-conv"
    conv: Literal["short", "long"] = Field("short", description="short depthwise or implicit long conv")
    kernel_size: int = Field(3, ge=1, description="short conv length (Zoology: 3)")
    filter_order: int = Field(16, ge=1, description="width of the long filter's FFN (Zoology: 16)")
    use_act: bool = Field(False, description="silu on both branches (Zoology: off)")


@register(BaseConvConfig)
class BaseConv(SequenceMixer):
    """BaseConv: a (short or implicit long) convolution gated by a linear projection, plus x."""

    def __init__(self, cfg: BaseConvConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        self.projection = nn.Linear(d_model, d_model)
        if cfg.conv == "short":
            self.conv = nn.Conv1d(d_model, d_model, cfg.kernel_size, groups=d_model,
                                  padding=cfg.kernel_size - 1)
        else:
            self.filter = HyenaFilter(HyenaConfig(filter_order=cfg.filter_order), d_model, max_len)

    def _gate(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        p = self.projection(x)
        if self.cfg.use_act:
            c, p = F.silu(c), F.silu(p)
        return c * p + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if L > self.max_len and self.cfg.conv == "long":
            raise ValueError(f"base-conv input length {L} exceeds max_len={self.max_len}")
        u = x.transpose(1, 2)  # [B, D, L]
        if self.cfg.conv == "short":
            c = self.conv(u)[..., :L]
        else:
            c = fft_causal_conv(u, self.filter(L).T) + u
        return self._gate(c.transpose(1, 2), x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        n = self.cfg.kernel_size - 1 if self.cfg.conv == "short" else self.max_len
        hist = torch.zeros(batch_size, self.d_model, n, **self.state_kind(device, dtype))
        return {"hist": hist, "pos": 0}

    def step(self, x_t: torch.Tensor, state):
        pos, hist = state["pos"], state["hist"]
        if self.cfg.conv == "short":
            window = torch.cat([hist, x_t[..., None].to(hist.dtype)], dim=-1)
            c = (window.to(x_t.dtype) * self.conv.weight[:, 0]).sum(-1) + self.conv.bias
            return self._gate(c, x_t), {"hist": window[..., 1:].clone(), "pos": pos + 1}
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
