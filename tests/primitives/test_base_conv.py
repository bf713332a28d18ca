"""BaseConv: a (short or implicit long) convolution gating a linear projection (Zoology)."""
from __future__ import annotations

import pytest
import torch

from mad_bench.primitives.sequence.base_conv import BaseConv, BaseConvConfig

from primitive_checks import (
    assert_defaults_build, assert_every_parameter_gets_a_gradient, assert_shipped_spec_runs,
    assert_steps_equal_parallel,
)

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "base-conv": lambda: BaseConv(BaseConvConfig(), D, MAX),
    "base-conv-long-act": lambda: BaseConv(BaseConvConfig(conv="long", use_act=True), D, MAX),
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
    assert_defaults_build("base-conv", d_model)


def test_shipped_spec_loads_and_runs():
    assert_shipped_spec_runs("base-conv")


def test_base_conv_hand_checked():
    m = BaseConv(BaseConvConfig(kernel_size=3), 4, 8)
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv.weight[:, 0, 1] = 1.0  # tap on the previous token
        m.conv.bias.zero_()
        m.projection.weight.copy_(torch.eye(4))
        m.projection.bias.fill_(2.0)
    x = torch.randn(1, 5, 4)
    prev = torch.cat([torch.zeros(1, 1, 4), x[:, :-1]], dim=1)
    torch.testing.assert_close(m(x), prev * (x + 2.0) + x)
