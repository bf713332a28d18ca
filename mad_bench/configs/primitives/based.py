"""Parameters of the ``based`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.based`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import SequenceMixerConfig


class BasedConfig(SequenceMixerConfig):
    type: Literal["based"] = "based"
    feature_dim: int = Field(16, ge=1, description="q / k width per head before the Taylor map")
    n_heads: int = Field(1, ge=1, description="heads; must divide d_model (value head width)")
    eps: float = Field(1e-12, gt=0.0, description="added to the normaliser")
    chunk_size: int = Field(64, ge=1, description="chunk length of the parallel form")

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
