"""SwiGLU feed-forward (Shazeer, 2020, "GLU Variants Improve Transformer").

    y = W_down (silu(W_gate x) * (W_up x))

MAD-Lab hard-codes the inner width to 352 (its paper's appendix says 512); it is a parameter.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..base import ChannelMixer, ChannelMixerConfig
from ..registry import register


class SwiGLUConfig(ChannelMixerConfig):
    type: Literal["swiglu"] = "swiglu"
    d_inner: int = Field(352, ge=1, description="hidden width (MAD-Lab: 352)")
    bias: bool = False


@register(SwiGLUConfig)
class SwiGLU(ChannelMixer):
    """Gated (SiLU) feed-forward channel mixer."""

    def __init__(self, cfg: SwiGLUConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        self.gate_up = nn.Linear(d_model, 2 * cfg.d_inner, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_inner, d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
