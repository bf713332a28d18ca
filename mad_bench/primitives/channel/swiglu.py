"""SwiGLU feed-forward (Shazeer, 2020, "GLU Variants Improve Transformer").

    y = W_down (silu(W_gate x) * (W_up x))

Inner width: written values are kept; left out, it follows the width as MAD-Lab's GLU sets it
(athms/mad-lab, ``mad/model/layers/mlp.py``, class ``GLU``: 8/3 of the width, rounded up to a
multiple of 16): 96 at d_model 32, 176 at 64, 352 at 128 (MAD's width), 688 at 256. The MAD
paper's appendix says 512; MAD-Lab's code is what its numbers came from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.swiglu import SwiGLUConfig
from ..base import ChannelMixer
from ..registry import register


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
