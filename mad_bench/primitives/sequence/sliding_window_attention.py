"""Sliding-window softmax attention, Based's partner layer (Arora et al., 2024, "Simple linear
attention language models balance the recall-throughput tradeoff", sec. 4: Based keeps exact
local attention over a short window beside its global Taylor linear attention).

    o_t = sum_{t - window < s <= t} softmax_s(q_t . k_s / sqrt(d_h)) v_s      (per head)

It is ``attention`` with a window always set: the parallel form masks the scores, ``step``
keeps a ring buffer of the last ``window`` keys and values, so the recurrent state is fixed
(``2 window d_model`` numbers) instead of growing with the sequence. Defaults: window 64 (the
Based paper's), heads derived from the width (``max(1, d_model // 64)``: head width 64 or the
whole width below 64), rotary on 8 dims of each head as ``attention`` has. Zoology's own
``SlidingAttn`` is one head with no rotary and attends to ``window + 1`` tokens; set
``n_heads: 1, rotary_dim: 0, window: W + 1`` to match it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..base import largest_divisor
from ..registry import register
from .attention import Attention, AttentionConfig


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


@register(SlidingWindowAttentionConfig)
class SlidingWindowAttention(Attention):
    """Causal softmax attention over a fixed window of recent tokens (fixed-size KV cache)."""

    def __init__(self, cfg: SlidingWindowAttentionConfig, d_model: int, max_len: int):
        cfg.check(d_model)
        super().__init__(cfg.resolved(d_model), d_model, max_len)
        self.cfg = cfg  # the window is always set, so Attention's code paths read it as is
