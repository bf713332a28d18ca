"""RetNet: retention, a matrix state with a fixed per-head decay (Sun et al.)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mad_bench.primitives.sequence.retnet import RetNet, RetNetConfig

from primitive_checks import GenericChecks, max_rel_err, randomise, redraw, split_heads

D, L, B = 32, 17, 2

CASES = {
    "retnet": lambda: RetNet(RetNetConfig(), D, 64),
    "retnet-h4-norotary-chunk8-rms": lambda: RetNet(RetNetConfig(
        n_heads=4, rotary=False, chunk_size=8, norm="rms"), D, 64),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, init=redraw, err=max_rel_err, flops=True)


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
