"""Parameters of the ``mamba2`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.mamba2`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class Mamba2Config(SequenceMixerConfig):
    type: Literal["mamba2"] = "mamba2"
    has_triton: ClassVar[bool] = True
    d_state: int = Field(16, ge=1, description="state size N per head")
    d_conv: int = Field(4, ge=1, description="causal depthwise conv kernel on x, B, C")
    expand: int = Field(2, ge=1, description="inner width E = expand * d_model")
    headdim: int = Field(32, ge=1, description="head dim P; must divide expand * d_model")
    n_groups: int = Field(1, ge=1, description="B/C groups; must divide the number of heads")
    A_init_min: float = Field(1.0, gt=0.0, description="A init: -U(A_init_min, A_init_max)")
    A_init_max: float = Field(16.0, gt=0.0)
    dt_min: float = Field(0.001, gt=0.0, description="dt init range, lower end")
    dt_max: float = Field(0.1, gt=0.0, description="dt init range, upper end")
    dt_init_floor: float = Field(1e-4, gt=0.0)
    norm_eps: float = Field(1e-5, gt=0.0)
    conv_bias: bool = True
    bias: bool = Field(False, description="bias in the in/out projections")
    chunk_size: int = Field(64, ge=1, description="chunk length of the torch SSD (the Triton "
                            "kernel picks its own; only speed and rounding depend on it)")

    def width_defaults(self, d_model: int) -> dict:
        return {"headdim": self.fitted_heads("headdim", self.expand * d_model)}

    def check(self, d_model: int) -> None:
        inner = self.expand * d_model
        if inner % self.headdim:
            raise ValueError(
                f"headdim={self.headdim} must divide expand * d_model = {inner}"
            )
        heads = inner // self.headdim
        if heads % self.n_groups:
            raise ValueError(f"n_groups={self.n_groups} must divide the number of heads {heads}")
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")
        if self.A_init_min > self.A_init_max:
            raise ValueError(
                f"A_init_min={self.A_init_min} must be <= A_init_max={self.A_init_max}"
            )
