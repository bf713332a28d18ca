"""Parameters of the ``gated-linear-attention`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.gla`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig
from ._linear import head_width, key_value_gcd


class GatedLinearAttentionConfig(SequenceMixerConfig):
    type: Literal["gated-linear-attention"] = "gated-linear-attention"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(8, ge=1, description="heads (MAD-Lab mh-gla: 8)")
    expand_k: float = Field(1.0, gt=0.0, description="key width = expand_k * d_model")
    expand_v: float = Field(1.0, gt=0.0, description="value width = expand_v * d_model")
    gate_low_rank_dim: int = Field(16, ge=1, description="rank of the forget-gate projection")
    gate_logit_normalizer: float = Field(16.0, gt=0.0, description="log gate = logsigmoid / this")
    output_gate: bool = Field(True, description="swish output gate (fla / MAD-Lab: on)")
    norm: Literal["rms", "layer"] = Field("rms", description="per-head output norm")
    norm_eps: float = Field(1e-5, gt=0.0)
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch parallel form (the Triton "
                            "kernel picks its own; only speed and rounding depend on it)")
    sub_chunk_size: int = Field(16, ge=1, description="secondary chunk of the torch form; divides "
                                "chunk_size")

    def width_defaults(self, d_model: int) -> dict:
        return {"n_heads": self.fitted_heads("n_heads", key_value_gcd(d_model, self.expand_k, self.expand_v))}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
        head_width(d_model, self.expand_k, "expand_k", self.n_heads)
        head_width(d_model, self.expand_v, "expand_v", self.n_heads)
        if self.chunk_size % self.sub_chunk_size:
            raise ValueError(
                f"sub_chunk_size={self.sub_chunk_size} must divide chunk_size={self.chunk_size}"
            )
