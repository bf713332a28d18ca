"""DeltaNet: linear attention whose state is updated by the delta rule (Schlag et al., Yang et al.)."""
from __future__ import annotations

import math

import pytest
import torch

from mad_bench.primitives.sequence.deltanet import DeltaNet, DeltaNetConfig

from primitive_checks import (
    assert_every_parameter_gets_a_gradient, assert_steps_equal_parallel, max_rel_err, randomise, redraw,
    split_heads,
)

D, L, B = 32, 17, 2

CASES = {
    "default": DeltaNetConfig(),
    "noconv-outgate-chunk8": DeltaNetConfig(short_conv=False, output_gate=True, chunk_size=8),
}


@pytest.mark.parametrize("name", CASES)
def test_step_matches_parallel(name):
    torch.manual_seed(0)
    m = DeltaNet(CASES[name], D, 64)
    randomise(m, redraw)
    assert_steps_equal_parallel(m, torch.randn(B, L, D), max_rel_err)


@pytest.mark.parametrize("name", CASES)
def test_all_params_get_grads(name):
    torch.manual_seed(0)
    m = DeltaNet(CASES[name], D, 64)
    m(torch.randn(B, L, D)).pow(2).sum().backward()
    assert_every_parameter_gets_a_gradient(m)
    assert m.flops_per_token(L) > m.mixing_flops_per_token(L) > 0


def test_deltanet_matches_naive_loop():
    torch.manual_seed(0)
    cfg = DeltaNetConfig(n_heads=2, short_conv=False, qk_activation="identity",
                         v_activation="identity", chunk_size=8)
    m = DeltaNet(cfg, D, 64)
    randomise(m, redraw)
    x = torch.randn(B, L, D)
    H, d = 2, D // 2
    q, k, v = (split_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    beta = torch.sigmoid(m.b_proj(x))  # [B, L, H]
    S = torch.zeros(B, H, d, d)  # value-major, as in the paper: o = S q
    eye = torch.eye(d)
    outs = []
    for t in range(L):
        kt, vt, bt = k[:, :, t], v[:, :, t], beta[:, t, :, None, None]
        kkT = kt[..., :, None] * kt[..., None, :]
        S = S @ (eye - bt * kkT) + bt * vt[..., :, None] * kt[..., None, :]
        outs.append((S @ q[:, :, t, :, None])[..., 0] / math.sqrt(d))
    o = torch.stack(outs, 1)
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.o_norm.weight
    assert torch.allclose(m(x), m.o_proj(o.reshape(B, L, D)), atol=1e-5, rtol=1e-4)


def test_short_conv_is_causal():
    m = DeltaNet(DeltaNetConfig(), D, 64)
    x = torch.randn(1, L, D)
    y = m(x)
    x2 = x.clone()
    x2[:, 10:] = torch.randn(1, L - 10, D)
    assert torch.allclose(m(x2)[:, :10], y[:, :10], atol=1e-6)
