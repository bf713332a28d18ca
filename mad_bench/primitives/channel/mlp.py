"""Position-wise feed-forward network (Vaswani et al., 2017): y = W_2 act(W_1 x + b_1) + b_2."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.mlp import MLPConfig
from ..base import ChannelMixer
from ..registry import register

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}


@register(MLPConfig)
class MLP(ChannelMixer):
    """Two-layer MLP channel mixer (the Transformer's feed-forward block)."""

    def __init__(self, cfg: MLPConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        inner = cfg.d_inner or 4 * d_model
        self.fc1 = nn.Linear(d_model, inner, bias=cfg.bias)
        self.fc2 = nn.Linear(inner, d_model, bias=cfg.bias)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
