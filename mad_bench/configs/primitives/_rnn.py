"""What the configs of the torch RNN primitives share (no torch); their modules build on
:mod:`mad_bench.primitives.sequence._rnn_common`."""
from __future__ import annotations

from pydantic import Field

from .base import SequenceMixerConfig


class TorchRNNConfig(SequenceMixerConfig):
    d_hidden: int | None = Field(None, ge=1, description="hidden width (None: d_model)")
    out_proj: bool = Field(True, description="linear output projection d_hidden -> d_model")
    bias: bool = True

    def check(self, d_model: int) -> None:
        if not self.out_proj and self.d_hidden not in (None, d_model):
            raise ValueError(
                f"d_hidden={self.d_hidden} must equal d_model={d_model} when out_proj is False"
            )
