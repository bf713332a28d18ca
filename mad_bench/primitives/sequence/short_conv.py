"""Short causal convolution mixer (the "short conv" of Zoology's BaseConv line of work:
Arora et al., 2023, "Zoology: Measuring and Improving Recall in Efficient Language Models").

    u   = x W_in                                  (identity when ``projections`` is False)
    c_t = b + sum_{j=0}^{K-1} w_j . u_{t-j}        (causal depthwise conv, u_{<0} = 0)
    y   = act(c) W_out                            (act: silu | gelu | none)

The conv is the op :func:`mad_bench.ops.causal_conv.causal_conv1d` (silu fused on its Triton
path); ``step`` keeps the last K - 1 projected inputs in a shift buffer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.short_conv import ShortConvConfig
from ...ops import causal_conv
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ..base import SequenceMixer
from ..registry import register

ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "none": lambda x: x}


@register(ShortConvConfig)
class ShortConv(SequenceMixer):
    """Causal depthwise short convolution with optional activation and projections."""

    ops = (causal_conv,)

    def __init__(self, cfg: ShortConvConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        self.K = cfg.kernel_size
        self.conv = nn.Conv1d(d_model, d_model, cfg.kernel_size, groups=d_model, bias=cfg.conv_bias)
        if cfg.projections:
            self.in_proj = nn.Linear(d_model, d_model, bias=cfg.bias)
            self.out_proj = nn.Linear(d_model, d_model, bias=cfg.bias)
        else:
            self.in_proj = self.out_proj = nn.Identity()
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        silu = self.cfg.activation == "silu"  # fused into the op; other activations after it
        c = causal_conv1d(self.in_proj(x), self.conv.weight, self.conv.bias,
                          "silu" if silu else None, impl=self.cfg.impl)
        return self.out_proj(c if silu else self.act(c))

    def init_state(self, batch_size: int, device=None, dtype=None):
        return torch.zeros(batch_size, self.d_model, self.K - 1, **self.state_kind(device, dtype))

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        c, state = causal_conv1d_step(self.in_proj(x_t), state, self.conv.weight, self.conv.bias)
        return self.out_proj(self.act(c)), state

    def mixing_flops_per_token(self, seq_len: int) -> float:
        return 2.0 * self.K * self.d_model
