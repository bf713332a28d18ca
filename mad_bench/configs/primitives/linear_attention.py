"""Parameters of the ``linear-attention`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.linear_attention`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class LinearAttentionConfig(SequenceMixerConfig):
    type: Literal["linear-attention"] = "linear-attention"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(16, ge=1, description="heads; must divide d_model (MAD-Lab mh: 16)")
    feature_map: Literal["elu", "relu", "identity", "hadamard"] = Field(
        "elu", description="phi applied to q and k (elu: elu+1 of the paper)"
    )
    normalize: bool = Field(True, description="divide by phi(q_t) . sum_s phi(k_s)")
    eps: float = Field(1e-6, gt=0.0, description="added to the normaliser")
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch parallel form (the Triton "
                            "kernel picks its own; only speed and rounding depend on it)")
    bias: bool = False

    def width_defaults(self, d_model: int) -> dict:
        return {"n_heads": self.fitted_heads("n_heads", d_model)}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
