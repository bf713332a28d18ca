"""Gated linear attention: a matrix state with a data-dependent per-key-channel decay (Yang et al.)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mad_bench.ops.gla.reference import chunk_gla
from mad_bench.primitives.sequence.gla import GatedLinearAttention, GatedLinearAttentionConfig

from primitive_checks import GenericChecks, max_rel_err, randomise, redraw, split_heads

D, L, B = 32, 17, 2

CASES = {
    "gla": lambda: GatedLinearAttention(GatedLinearAttentionConfig(), D, 64),
    "gla-h2-chunk8-sub4-layernorm": lambda: GatedLinearAttention(GatedLinearAttentionConfig(
        n_heads=2, chunk_size=8, sub_chunk_size=4, norm="layer"), D, 64),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, init=redraw, err=max_rel_err, flops=True)


def test_gla_stable_under_extreme_decay():
    q = torch.randn(1, 1, 40, 4, requires_grad=True)
    k, v = torch.randn(1, 1, 40, 4), torch.randn(1, 1, 40, 4)
    log_g = torch.full((1, 1, 40, 4), -60.0, requires_grad=True)  # exp(-60 * 16) underflows
    o = chunk_gla(q, k, v, log_g)
    o.sum().backward()
    assert torch.isfinite(o).all() and torch.isfinite(q.grad).all()
    assert torch.isfinite(log_g.grad).all()
    # only the current step survives: o_t = (q_t . k_t) v_t
    assert torch.allclose(o, (q * k).sum(-1, keepdim=True) * v, atol=1e-5)


def test_gla_matches_naive_loop():
    torch.manual_seed(0)
    m = GatedLinearAttention(GatedLinearAttentionConfig(n_heads=2, chunk_size=8, sub_chunk_size=4), D, 64)
    randomise(m, redraw)
    x = torch.randn(B, L, D)
    H, dk = 2, D // 2
    q, k, v = (split_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    a = torch.sigmoid(split_heads(m.gk_up(m.gk_down(x)), H)) ** (1 / 16)  # exp(logsigmoid / 16)
    S = torch.zeros(B, H, dk, dk)
    outs = []
    for t in range(L):
        S = a[:, :, t, :, None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t] / math.sqrt(dk), S))
    o = torch.stack(outs, 1)  # [B, L, H, dv]
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.o_norm.weight
    y = m.o_proj(o.reshape(B, L, D) * F.silu(m.g_proj(x)))
    assert torch.allclose(m(x), y, atol=1e-5, rtol=1e-4)
