"""Gated DeltaNet: the delta rule with a data-dependent decay (MAD-Lab's settings)."""
from __future__ import annotations

import pytest
import torch

from mad_bench.primitives.sequence.gated_deltanet import GatedDeltaNet, GatedDeltaNetConfig

from primitive_checks import (
    assert_defaults_build, assert_every_parameter_gets_a_gradient, assert_shipped_spec_runs,
    assert_steps_equal_parallel,
)

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "gated-deltanet": lambda: GatedDeltaNet(GatedDeltaNetConfig(), D, MAX),
    "gated-deltanet-h2-plain": lambda: GatedDeltaNet(GatedDeltaNetConfig(
        n_heads=2, head_dim=8, short_conv=False, output_gate=False, chunk_size=4), D, MAX),
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
    assert_defaults_build("gated-deltanet", d_model)


def test_shipped_spec_loads_and_runs():
    assert_shipped_spec_runs("gated-deltanet")


def test_mad_lab_gated_deltanet_heads_at_128():
    m = GatedDeltaNet(GatedDeltaNetConfig(), 128, 8)  # MAD-Lab: 4 heads of 32, values 2 x 32
    assert (m.n_heads, m.dk, m.dv) == (4, 32, 64)
    log_g = -m.A_log.exp() * torch.nn.functional.softplus(m.dt_bias)
    assert (log_g < 0).all()  # every decay in (0, 1)
