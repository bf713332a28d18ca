"""Parameters of the ``gated-deltanet`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.gated_deltanet`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class GatedDeltaNetConfig(SequenceMixerConfig):
    type: Literal["gated-deltanet"] = "gated-deltanet"
    has_triton: ClassVar[bool] = True
    head_dim: int = Field(32, ge=1, description="key width per head (MAD-Lab: 32)")
    n_heads: int | None = Field(None, ge=1, description="heads (None: max(1, d_model // head_dim))")
    expand_v: float = Field(2.0, gt=0.0, description="value width per head = expand_v * head_dim")
    short_conv: bool = Field(True, description="silu(short causal conv) on q, k, v")
    conv_size: int = Field(4, ge=2, description="short conv kernel length")
    output_gate: bool = Field(True, description="silu output gate after the head norm")
    norm_eps: float = Field(1e-5, gt=0.0)
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch parallel form")

    def heads(self, d_model: int) -> int:
        return self.n_heads or max(1, d_model // self.head_dim)

    def check(self, d_model: int) -> None:
        dv = self.expand_v * self.head_dim
        if dv != int(dv):
            raise ValueError(f"expand_v={self.expand_v} gives value head width {dv} at "
                             f"head_dim={self.head_dim}, which must be an integer")
