"""Parameters of the ``rwkv6`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.rwkv6`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class RWKV6Config(SequenceMixerConfig):
    type: Literal["rwkv6"] = "rwkv6"
    has_triton: ClassVar[bool] = True
    head_dim: int = Field(16, ge=1, description="head size; must divide d_model")
    mix_rank: int = Field(32, ge=1, description="low-rank width of the data-dependent shift")
    decay_rank: int = Field(64, ge=1, description="low-rank width of the data-dependent decay")
    head_size_divisor: float = Field(8.0, gt=0.0, description="GroupNorm eps = 1e-5 x this^2")
    chunk_size: int = Field(16, ge=1, description="chunk length of the torch parallel form (the "
                            "Triton kernel is a sequential scan; only speed and rounding depend on it)")

    def width_defaults(self, d_model: int) -> dict:
        return {"head_dim": self.fitted_heads("head_dim", d_model)}

    def check(self, d_model: int) -> None:
        if d_model % self.head_dim:
            raise ValueError(f"head_dim={self.head_dim} must divide d_model={d_model}")
