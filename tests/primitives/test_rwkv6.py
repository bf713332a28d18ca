"""RWKV-6: a matrix state with a data-dependent per-channel decay and a bonus for the current token."""
from __future__ import annotations

import torch

from mad_bench.ops.rwkv6 import wkv6_chunked
from mad_bench.primitives.sequence.rwkv6 import RWKV6, RWKV6Config

from primitive_checks import GenericChecks, add_noise

D, L, MAX = 32, 17, 24

CASES = {"rwkv6": lambda: RWKV6(RWKV6Config(chunk_size=4), D, MAX)}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=3, init=add_noise(0.3), causal=True)


def test_wkv6_naive_recurrence():
    """Chunked WKV against the recurrence S_t = diag(w_t) S + k^T v, o = r (S + diag(u) k^T v)."""
    torch.manual_seed(0)
    B, H, L, K = 2, 2, 13, 4
    r, k, v = (torch.randn(B, H, L, K, dtype=torch.float64) for _ in range(3))
    logw = -torch.rand(B, H, L, K, dtype=torch.float64) * 3
    u = torch.randn(H, K, dtype=torch.float64)
    S = torch.zeros(B, H, K, K, dtype=torch.float64)
    out = []
    for t in range(L):
        kv = k[:, :, t, :, None] * v[:, :, t, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", r[:, :, t], S + u[None, :, :, None] * kv))
        S = logw[:, :, t].exp()[..., None] * S + kv
    ref = torch.stack(out, 2)
    for chunk in (1, 4, 5, 16):
        torch.testing.assert_close(wkv6_chunked(r, k, v, logw, u, chunk), ref)


def test_wkv6_strong_decay_is_finite():
    B, H, L, K = 1, 1, 64, 4
    r, k, v = (torch.randn(B, H, L, K) for _ in range(3))
    logw = torch.full((B, H, L, K), -50.0)  # exp(+50 * 16) would overflow a factored form
    o = wkv6_chunked(r, k, v, logw, torch.zeros(H, K), 16)
    assert torch.isfinite(o).all()
    # total forgetting, u = 0: S_{t-1} = k_{t-1}^T v_{t-1}, so o_t = (r_t . k_{t-1}) v_{t-1}
    expect = torch.zeros_like(o)
    expect[:, :, 1:] = (r[:, :, 1:] * k[:, :, :-1]).sum(-1, keepdim=True) * v[:, :, :-1]
    torch.testing.assert_close(o, expect)


def test_rwkv6_hand_single_token_shift():
    """At t=0 the shift sees zeros; with zero bonus and S=0 the output is GroupNorm(0)*g -> 0."""
    m = RWKV6(RWKV6Config(), 32, 8)
    with torch.no_grad():
        m.bonus.zero_()
    y = m(torch.randn(2, 3, 32))
    torch.testing.assert_close(y[:, 0], torch.zeros(2, 32))
