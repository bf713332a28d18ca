"""Parameters of the ``h3`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.h3`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import SequenceMixerConfig


class H3Config(SequenceMixerConfig):
    type: Literal["h3"] = "h3"
    d_state: int | None = Field(64, ge=2, description="N: shift taps and diagonal-SSM state (even); "
                                                      "None: the sequence length (Zoology's figure 2)")
    head_dim: int = Field(1, ge=1, description="channels per head (the k v^T outer product size)")
    dt_min: float = Field(1e-3, gt=0.0)
    dt_max: float = Field(1e-1, gt=0.0)

    def check(self, d_model: int) -> None:
        if d_model % self.head_dim:
            raise ValueError(f"head_dim={self.head_dim} must divide d_model={d_model}")
        if self.d_state is not None and self.d_state % 2:
            raise ValueError(f"d_state={self.d_state} must be even (N/2 complex modes)")
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")
