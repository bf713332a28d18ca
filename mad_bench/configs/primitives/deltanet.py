"""Parameters of the ``deltanet`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.deltanet`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig
from ._linear import head_width, key_value_gcd


class DeltaNetConfig(SequenceMixerConfig):
    type: Literal["deltanet"] = "deltanet"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(4, ge=1, description="heads; must divide the key and value widths")
    expand_k: float = Field(1.0, gt=0.0, description="key width = expand_k * d_model")
    expand_v: float = Field(1.0, gt=0.0, description="value width = expand_v * d_model")
    qk_activation: Literal["silu", "relu", "elu1", "identity"] = Field(
        "silu", description="applied to q and k before their L2 normalisation"
    )
    v_activation: Literal["silu", "identity"] = "silu"
    short_conv: bool = Field(True, description="depthwise causal conv on q, k, v (fla: on)")
    conv_size: int = Field(4, ge=2, description="short conv kernel length")
    output_gate: bool = Field(False, description="swish output gate after the head norm")
    norm_eps: float = Field(1e-5, gt=0.0)
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch parallel form (the "
                            "Triton kernel is a sequential scan; only speed and rounding depend on it)")

    def width_defaults(self, d_model: int) -> dict:
        return {"n_heads": self.fitted_heads("n_heads", key_value_gcd(d_model, self.expand_k, self.expand_v))}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
        head_width(d_model, self.expand_k, "expand_k", self.n_heads)
        head_width(d_model, self.expand_v, "expand_v", self.n_heads)
