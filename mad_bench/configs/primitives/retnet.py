"""Parameters of the ``retnet`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.retnet`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig
from ._linear import head_width, key_value_gcd


class RetNetConfig(SequenceMixerConfig):
    type: Literal["retnet"] = "retnet"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(8, ge=1, description="heads; also sets the decay scales")
    expand_k: float = Field(1.0, gt=0.0, description="key width = expand_k * d_model")
    expand_v: float = Field(2.0, gt=0.0, description="value width = expand_v * d_model (paper: 2)")
    rotary: bool = Field(True, description="rotate q / k by position (xPos without its scaling)")
    rotary_base: float = Field(10000.0, gt=1.0)
    norm: Literal["layer", "rms"] = Field("layer", description="per-head output norm")
    norm_eps: float = Field(1e-5, gt=0.0)
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch parallel form (the Triton "
                            "kernel picks its own; only speed and rounding depend on it)")

    def width_defaults(self, d_model: int) -> dict:
        n_heads = self.fitted_heads("n_heads", key_value_gcd(d_model, self.expand_k, self.expand_v))
        dk = d_model * self.expand_k / n_heads
        return {"n_heads": n_heads, "rotary": self.rotary and dk == int(dk) and int(dk) % 2 == 0}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
        dk = head_width(d_model, self.expand_k, "expand_k", self.n_heads) // self.n_heads
        head_width(d_model, self.expand_v, "expand_v", self.n_heads)
        if self.rotary and dk % 2:
            raise ValueError(f"rotary=True needs an even key head dim, got {dk} (expand_k)")
