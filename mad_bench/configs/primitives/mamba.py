"""Parameters of the ``mamba`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.mamba`."""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class MambaConfig(SequenceMixerConfig):
    type: Literal["mamba"] = "mamba"
    has_triton: ClassVar[bool] = True
    d_state: int = Field(4, ge=1, description="SSM state size per channel (MAD-Lab: 4)")
    d_conv: int = Field(4, ge=1, description="causal depthwise conv kernel (MAD-Lab: 4)")
    expand: int = Field(2, ge=1, description="inner width = expand * d_model (MAD-Lab: 2)")
    dt_rank: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="rank of the dt projection ('auto': ceil(d_model / 16))"
    )
    dt_min: float = Field(0.001, gt=0.0, description="dt init range, lower end")
    dt_max: float = Field(0.1, gt=0.0, description="dt init range, upper end")
    dt_init_floor: float = Field(1e-4, gt=0.0)
    conv_bias: bool = True
    bias: bool = Field(False, description="bias in the in/out projections")
    chunk_size: int = Field(32, ge=1, description="chunk length of the parallel scan")

    def check(self, d_model: int) -> None:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")
