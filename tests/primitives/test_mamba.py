"""Mamba: the selective scan (input-dependent diagonal SSM) behind a short conv and a gate."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.selective_scan.reference import selective_scan
from mad_bench.primitives.sequence.mamba import Mamba, MambaConfig

from primitive_checks import GenericChecks, add_fan_in_noise, max_rel_err

D_MODEL, L = 32, 17

CASES = {
    "mamba-chunk-4": lambda: Mamba(MambaConfig(chunk_size=4), D_MODEL, 64),
    "mamba": lambda: Mamba(MambaConfig(), D_MODEL, 64),
}
CHECKS = GenericChecks(d_model=D_MODEL, seq_len=L, step_batch=3, init=add_fan_in_noise(0.5),
                       skip=frozenset({"A_log"}), err=max_rel_err, flops=True)


def naive_selective_scan(u, delta, A, B, C, D):
    b, d, l = u.shape
    h = torch.zeros(b, d, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(l):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[
            ..., None
        ] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(ys, -1), h


def test_selective_scan_by_hand():
    # d = n = 1, decay exp(-ln 2) = 1/2 per step, one unit impulse: y = 1, 1/2, 1/4 (+ D u)
    u = torch.tensor([[[1.0, 0.0, 0.0]]])
    delta = torch.ones(1, 1, 3)
    A = torch.tensor([[-math.log(2.0)]])
    B = C = torch.ones(1, 1, 3)
    y = selective_scan(u, delta, A, B, C, D=torch.tensor([3.0]), chunk_size=2)
    torch.testing.assert_close(y, torch.tensor([[[4.0, 0.5, 0.25]]]))


@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_selective_scan_matches_loop(chunk):
    torch.manual_seed(0)
    b, d, n, l = 2, 5, 3, 19
    u = torch.randn(b, d, l, dtype=torch.float64)
    dt_raw = torch.randn(b, d, l, dtype=torch.float64)
    bias = torch.randn(d, dtype=torch.float64)
    A = -torch.rand(d, n, dtype=torch.float64) * 3
    B, C = torch.randn(b, n, l, dtype=torch.float64), torch.randn(b, n, l, dtype=torch.float64)
    D, z = torch.randn(d, dtype=torch.float64), torch.randn(b, d, l, dtype=torch.float64)
    y, last = selective_scan(
        u, dt_raw, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True,
        return_last_state=True, chunk_size=chunk,
    )
    ref, h = naive_selective_scan(u, F.softplus(dt_raw + bias[:, None]), A, B, C, D)
    torch.testing.assert_close(y, (ref * F.silu(z)).to(y.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, h, rtol=1e-5, atol=1e-5)  # fp64 in, fp64 state
    # grouped B/C ([b, g, n, l], g = 1) is the same as shared
    y2 = selective_scan(u, F.softplus(dt_raw + bias[:, None]), A, B[:, None], C[:, None], D,
                        z=z, chunk_size=chunk)
    torch.testing.assert_close(y2, y, rtol=1e-5, atol=1e-6)


def test_mamba_forward_matches_naive():
    torch.manual_seed(0)
    m = Mamba(MambaConfig(chunk_size=4), D_MODEL, 64)
    x = torch.randn(2, L, D_MODEL)
    with torch.no_grad():
        xs, z = m.in_proj(x).chunk(2, -1)
        K = m.cfg.d_conv
        xp = F.pad(xs, (0, 0, K - 1, 0))
        w = m.conv1d.weight[:, 0]  # [E, K]
        xc = torch.stack([(xp[:, t : t + K] * w.t()).sum(1) for t in range(L)], 1) + m.conv1d.bias
        xc = F.silu(xc)
        dt, Bm, Cm = m.x_proj(xc).split([m.dt_rank, m.cfg.d_state, m.cfg.d_state], -1)
        delta = F.softplus(m.dt_proj(dt))
        y, _ = naive_selective_scan(
            xc.transpose(1, 2), delta.transpose(1, 2), -torch.exp(m.A_log), Bm.transpose(1, 2),
            Cm.transpose(1, 2), m.D,
        )
        ref = m.out_proj(y.transpose(1, 2) * F.silu(z))
        assert max_rel_err(m(x), ref) <= 1e-5
    assert m.dt_rank == 2 and m.d_inner == 64  # 'auto' = ceil(32 / 16); expand 2
