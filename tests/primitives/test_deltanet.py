"""DeltaNet: linear attention whose state is updated by the delta rule (Schlag et al., Yang et al.)."""
from __future__ import annotations

import math

import torch

from mad_bench.primitives.sequence.deltanet import DeltaNet, DeltaNetConfig

from primitive_checks import GenericChecks, max_rel_err, randomise, redraw, split_heads

D, L, B = 32, 17, 2

CASES = {
    "deltanet": lambda: DeltaNet(DeltaNetConfig(), D, 64),
    "deltanet-noconv-outgate-chunk8": lambda: DeltaNet(DeltaNetConfig(
        short_conv=False, output_gate=True, chunk_size=8), D, 64),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, init=redraw, err=max_rel_err, flops=True)


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
