"""Parameters of the ``moe`` primitive (no torch); its module:
:mod:`mad_bench.primitives.channel.moe`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ChannelMixerConfig


class MoEConfig(ChannelMixerConfig):
    type: Literal["moe"] = "moe"
    n_experts: int = Field(8, ge=1, description="number of experts")
    top_k: int = Field(2, ge=1, description="active experts per token; <= n_experts")
    d_inner: int = Field(16, ge=1, description="hidden width of each expert (MAD-Lab: 16)")
    expert: Literal["glu", "mlp"] = "glu"
    activation: Literal["gelu", "silu", "relu"] = "gelu"
    bias: bool = False
    aux_loss_weight: float = Field(0.01, ge=0.0, description="load-balancing loss coefficient")
    dispatch: Literal["dense", "sparse"] = "dense"

    def check(self, d_model: int) -> None:
        if self.top_k > self.n_experts:
            raise ValueError(
                f"top_k={self.top_k} must be <= n_experts={self.n_experts}"
            )
