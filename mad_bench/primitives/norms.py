"""Normalisations that wrap every layer: RMSNorm (Zhang & Sennrich, 2019) and LayerNorm."""
from __future__ import annotations

from torch import nn

NORMS = {"rmsnorm": nn.RMSNorm, "layernorm": nn.LayerNorm}


def make_norm(name: str, d_model: int) -> nn.Module:
    return NORMS[name](d_model, eps=1e-5)
