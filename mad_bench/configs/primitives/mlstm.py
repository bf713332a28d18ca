"""Parameters of the ``mlstm`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.mlstm`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import SequenceMixerConfig


def valid_block(chunk_size: int) -> bool:
    """The Triton kernel's chunk length must be a power of two >= 16."""
    return chunk_size >= 16 and chunk_size & (chunk_size - 1) == 0


class MLSTMConfig(SequenceMixerConfig):
    type: Literal["mlstm"] = "mlstm"
    has_triton: ClassVar[bool] = True
    n_heads: int = Field(4, ge=1, description="heads; must divide d_model")
    d_conv: int = Field(4, ge=0, description="causal conv kernel before q, k (0: no conv)")
    chunk_size: int = Field(64, ge=1, description="chunk length of the parallel form, torch and "
                            "Triton alike (Triton needs a power of two >= 16; 'auto' runs torch "
                            "for other values)")
    forget_bias_init: tuple[float, float] = Field(
        (3.0, 6.0), description="forget-gate biases, linspace over heads (xLSTM: 3..6)"
    )
    norm_eps: float = Field(1e-6, gt=0.0)
    bias: bool = Field(False, description="bias in the q/k/v/out projections")

    def width_defaults(self, d_model: int) -> dict:
        return {"n_heads": self.fitted_heads("n_heads", d_model)}

    def check(self, d_model: int) -> None:
        if d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}")
        if self.impl == "triton" and not valid_block(self.chunk_size):
            raise ValueError(f"chunk_size={self.chunk_size}: impl 'triton' needs a power of two "
                             f">= 16 (valid: 16, 32, 64, 128, ...)")
