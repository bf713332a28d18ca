"""Parameters of the ``attention`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.attention`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class AttentionConfig(SequenceMixerConfig):
    type: Literal["attention"] = "attention"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(16, ge=1, description="attention heads; must divide d_model")
    rotary_dim: int = Field(8, ge=0, description="head dims that get rotary embeddings (0: none)")
    rotary_base: float = Field(10000.0, gt=1.0)
    window: int | None = Field(None, ge=1, description="sliding window length (None: full causal)")
    bias: bool = Field(True, description="bias on the qkv and out projections (MAD-Lab's flash-attn "
                                         "MHA: qkv_proj_bias and out_proj_bias, both on)")

    def width_defaults(self, d_model: int) -> dict:
        n_heads = self.fitted_heads("n_heads", d_model)
        head_dim = d_model // n_heads
        return {"n_heads": n_heads, "rotary_dim": min(type(self).model_fields["rotary_dim"].default,
                                                      head_dim - head_dim % 2)}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
        head_dim = d_model // self.n_heads
        if self.rotary_dim > head_dim or self.rotary_dim % 2:
            raise ValueError(
                f"rotary_dim={self.rotary_dim} must be even and <= head dim {head_dim}"
            )
