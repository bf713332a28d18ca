"""RetNet: retention, a matrix state with a fixed per-head decay (Sun et al.)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.primitives.sequence.retnet import RetNet, RetNetConfig

from primitive_checks import (
    assert_every_parameter_gets_a_gradient, assert_steps_equal_parallel, max_rel_err, randomise, redraw,
    split_heads,
)

D, L, B = 32, 17, 2

CASES = {
    "default": RetNetConfig(),
    "h4-norotary-chunk8-rms": RetNetConfig(n_heads=4, rotary=False, chunk_size=8, norm="rms"),
}


@pytest.mark.parametrize("name", CASES)
def test_step_matches_parallel(name):
    torch.manual_seed(0)
    m = RetNet(CASES[name], D, 64)
    randomise(m, redraw)
    assert_steps_equal_parallel(m, torch.randn(B, L, D), max_rel_err)


@pytest.mark.parametrize("name", CASES)
def test_all_params_get_grads(name):
    torch.manual_seed(0)
    m = RetNet(CASES[name], D, 64)
    m(torch.randn(B, L, D)).pow(2).sum().backward()
    assert_every_parameter_gets_a_gradient(m)
    assert m.flops_per_token(L) > m.mixing_flops_per_token(L) > 0


def test_retnet_decays_and_naive_loop():
    torch.manual_seed(0)
    m = RetNet(RetNetConfig(n_heads=4, rotary=False, chunk_size=8), D, 64)
    gammas = torch.exp(m.log_gamma)
    assert torch.allclose(gammas, torch.tensor([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256]))
    randomise(m, redraw)
    x = torch.randn(B, L, D)
    H, dk, dv = 4, D // 4, 2 * D // 4
    q, k, v = (split_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    # retention's parallel form: (q k^T / sqrt(dk) * gamma^(t-s) [s <= t]) v
    t = torch.arange(L)
    decay = gammas[:, None, None] ** (t[:, None] - t[None, :]).clamp(min=0)
    decay = decay * (t[None, :] <= t[:, None])
    o = (q @ k.transpose(-1, -2) / math.sqrt(dk) * decay) @ v  # [B, H, L, dv]
    o = F.layer_norm(o.transpose(1, 2), (dv,), m.o_norm.weight, m.o_norm.bias, 1e-5)
    y = m.o_proj(F.silu(m.g_proj(x)) * o.reshape(B, L, 2 * D))
    assert torch.allclose(m(x), y, atol=1e-5, rtol=1e-4)
