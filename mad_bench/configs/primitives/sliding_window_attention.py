"""Parameters of the ``sliding-window-attention`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.sliding_window_attention`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import largest_divisor
from .attention import AttentionConfig


class SlidingWindowAttentionConfig(AttentionConfig):
    type: Literal["sliding-window-attention"] = "sliding-window-attention"  # type: ignore[assignment]
    n_heads: int | None = Field(None, ge=1, description="heads (None: max(1, d_model // 64))")  # type: ignore[assignment]
    window: int = Field(64, ge=1, description="tokens each query attends to, itself included")  # type: ignore[assignment]

    def heads(self, d_model: int) -> int:
        """The written head count, else one head per 64 channels (a divisor of the width)."""
        return self.n_heads or largest_divisor(d_model, max(1, d_model // 64))

    def width_defaults(self, d_model: int) -> dict:
        head_dim = d_model // self.heads(d_model)
        return {"rotary_dim": min(type(self).model_fields["rotary_dim"].default, head_dim - head_dim % 2)}

    def check(self, d_model: int) -> None:
        AttentionConfig.check(self.resolved(d_model), d_model)

    def resolved(self, d_model: int) -> AttentionConfig:
        """The plain attention config this layer runs (heads filled in)."""
        values = self.model_dump(exclude={"type"})
        return AttentionConfig(**{**values, "n_heads": self.heads(d_model)})
