"""Parameters of the ``swiglu`` primitive (no torch); its module:
:mod:`mad_bench.primitives.channel.swiglu`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ChannelMixerConfig


def mad_lab_inner(d_model: int, multiple_of: int = 16) -> int:
    """MAD-Lab's GLU inner width: int(8 d_model / 3) rounded up to a multiple of 16."""
    inner = int(2 * d_model * 4 / 3)
    return multiple_of * ((inner + multiple_of - 1) // multiple_of)


class SwiGLUConfig(ChannelMixerConfig):
    type: Literal["swiglu"] = "swiglu"
    d_inner: int = Field(352, ge=1, description="hidden width (left out: MAD-Lab's rule, 8/3 "
                         "d_model rounded up to a multiple of 16; 352 at d_model 128)")
    bias: bool = False

    def width_defaults(self, d_model: int) -> dict:
        return {"d_inner": mad_lab_inner(d_model)}
