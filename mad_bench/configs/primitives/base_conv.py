"""Parameters of the ``base-conv`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.base_conv`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class BaseConvConfig(SequenceMixerConfig):
    type: Literal["base-conv"] = "base-conv"
    has_triton: ClassVar[bool] = True  # the short conv (ops.causal_conv)
    conv: Literal["short", "long"] = Field("short", description="short depthwise or implicit long conv")
    kernel_size: int = Field(3, ge=1, description="short conv length (Zoology: 3)")
    filter_order: int = Field(16, ge=1, description="hidden width of the long filter's MLP "
                                                    "(Zoology's d_hidden: 16)")
    use_act: bool = Field(False, description="silu on both branches (Zoology: off)")
