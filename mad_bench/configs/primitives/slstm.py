"""Parameters of the ``slstm`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.slstm`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


class SLSTMConfig(SequenceMixerConfig):
    type: Literal["slstm"] = "slstm"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(4, ge=1, description="heads (recurrent blocks); must divide d_model")
    forget_bias_init: tuple[float, float] = Field(
        (3.0, 6.0), description="forget-gate biases, linspace over heads"
    )
    norm_eps: float = Field(1e-6, gt=0.0)
    bias: bool = Field(False, description="bias in the output projection")

    def width_defaults(self, d_model: int) -> dict:
        return {"n_heads": self.fitted_heads("n_heads", d_model)}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
