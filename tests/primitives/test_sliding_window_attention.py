"""Sliding-window attention: softmax attention over the last ``window`` tokens (Zoology)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.attention import Attention, AttentionConfig
from mad_bench.primitives.sequence.sliding_window_attention import (
    SlidingWindowAttention, SlidingWindowAttentionConfig,
)

from primitive_checks import GenericChecks

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "swa-w5": lambda: SlidingWindowAttention(SlidingWindowAttentionConfig(window=5), D, MAX),
    "swa-h2-norope": lambda: SlidingWindowAttention(
        SlidingWindowAttentionConfig(window=3, n_heads=2, rotary_dim=0), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, eval=True,
                       registered="sliding-window-attention", shipped_spec="sliding-window-attention")


def test_sliding_window_attention_is_windowed_attention():
    torch.manual_seed(0)
    swa = SlidingWindowAttention(SlidingWindowAttentionConfig(window=4), 64, 32)
    att = Attention(AttentionConfig(n_heads=1, window=4), 64, 32)
    att.load_state_dict(swa.state_dict())
    x = torch.randn(2, 20, 64)
    torch.testing.assert_close(swa(x), att(x))
    assert swa.n_heads == 1 and SlidingWindowAttentionConfig().heads(256) == 4
    one = SlidingWindowAttention(SlidingWindowAttentionConfig(window=1), 8, 8)
    # a window of one: each token attends to itself only
    torch.testing.assert_close(one(x[:, :5, :8]), one.out(one.qkv(x[:, :5, :8])[..., 16:]))
