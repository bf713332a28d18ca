"""Parameters of the ``short-conv`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.short_conv`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class ShortConvConfig(SequenceMixerConfig):
    type: Literal["short-conv"] = "short-conv"
    has_triton: ClassVar[bool] = True
    kernel_size: int = Field(4, ge=1, description="causal depthwise filter length")
    activation: Literal["silu", "gelu", "none"] = "silu"
    projections: bool = Field(True, description="linear in/out projections around the conv")
    conv_bias: bool = True
    bias: bool = Field(False, description="bias of the in/out projections")
