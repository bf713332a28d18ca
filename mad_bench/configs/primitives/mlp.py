"""Parameters of the ``mlp`` primitive (no torch); its module:
:mod:`mad_bench.primitives.channel.mlp`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ChannelMixerConfig


class MLPConfig(ChannelMixerConfig):
    type: Literal["mlp"] = "mlp"
    d_inner: int | None = Field(None, ge=1, description="hidden width (None: 4 x d_model)")
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    bias: bool = True
