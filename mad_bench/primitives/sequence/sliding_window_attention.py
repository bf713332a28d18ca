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

from ...configs.primitives.sliding_window_attention import SlidingWindowAttentionConfig
from ..registry import register
from .attention import Attention


@register(SlidingWindowAttentionConfig)
class SlidingWindowAttention(Attention):
    """Causal softmax attention over a fixed window of recent tokens (fixed-size KV cache)."""

    def __init__(self, cfg: SlidingWindowAttentionConfig, d_model: int, max_len: int):
        cfg.check(d_model)
        super().__init__(cfg.resolved(d_model), d_model, max_len)
        self.cfg = cfg  # the window is always set, so Attention's code paths read it as is
