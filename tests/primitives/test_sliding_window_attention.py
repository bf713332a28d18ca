"""Sliding-window attention: softmax attention over the last ``window`` tokens (Zoology)."""
from __future__ import annotations

import pytest
import torch

from mad_bench.primitives.sequence.attention import Attention, AttentionConfig
from mad_bench.primitives.sequence.sliding_window_attention import (
    SlidingWindowAttention, SlidingWindowAttentionConfig,
)

from primitive_checks import (
    assert_defaults_build, assert_every_parameter_gets_a_gradient, assert_shipped_spec_runs,
    assert_steps_equal_parallel,
)

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "swa-w5": lambda: SlidingWindowAttention(SlidingWindowAttentionConfig(window=5), D, MAX),
    "swa-h2-norope": lambda: SlidingWindowAttention(
        SlidingWindowAttentionConfig(window=3, n_heads=2, rotary_dim=0), D, MAX),
}


@pytest.mark.parametrize("name", CASES)
def test_step_equals_parallel(name):
    torch.manual_seed(0)
    m = CASES[name]().eval()
    assert_steps_equal_parallel(m, torch.randn(B, L, D))


@pytest.mark.parametrize("name", CASES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = CASES[name]()
    m(torch.randn(B, L, D)).pow(2).sum().backward()
    assert_every_parameter_gets_a_gradient(m)


@pytest.mark.parametrize("d_model", [32, 64, 128, 256, 512])
def test_defaults_build_at_every_width(d_model):
    assert_defaults_build("sliding-window-attention", d_model)


def test_shipped_spec_loads_and_runs():
    assert_shipped_spec_runs("sliding-window-attention")


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
