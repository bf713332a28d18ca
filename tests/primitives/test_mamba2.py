"""Mamba-2: the state-space dual (scalar decay per head), computed chunk by chunk."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.ssd.reference import ssd_chunked
from mad_bench.primitives.sequence.mamba2 import Mamba2, Mamba2Config

from primitive_checks import GenericChecks, add_fan_in_noise, max_rel_err

D_MODEL, L = 32, 17

CASES = {
    "mamba2-chunk-4-h16-n8-g2": lambda: Mamba2(Mamba2Config(
        chunk_size=4, headdim=16, d_state=8, n_groups=2), D_MODEL, 64),
    "mamba2": lambda: Mamba2(Mamba2Config(), D_MODEL, 64),
}
CHECKS = GenericChecks(d_model=D_MODEL, seq_len=L, step_batch=3, init=add_fan_in_noise(0.5),
                       skip=frozenset({"A_log"}), err=max_rel_err, flops=True)


def naive_ssd(x, dt, A, B, C):
    b, l, h, p = x.shape
    rep = h // B.shape[2]
    S = torch.zeros(b, h, p, B.shape[3], dtype=x.dtype)
    ys = []
    for t in range(l):
        Bh = B[:, t].repeat_interleave(rep, 1)
        Ch = C[:, t].repeat_interleave(rep, 1)
        S = torch.exp(dt[:, t] * A)[..., None, None] * S + (dt[:, t, :, None] * x[:, t])[
            ..., None
        ] * Bh[:, :, None]
        ys.append((S * Ch[:, :, None]).sum(-1))
    return torch.stack(ys, 1), S


def test_ssd_by_hand():
    x = torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1)
    dt = torch.ones(1, 3, 1)
    A = torch.tensor([-math.log(2.0)])
    B = C = torch.ones(1, 3, 1, 1)
    y, last = ssd_chunked(x, dt, A, B, C, chunk_size=2)
    torch.testing.assert_close(y.flatten(), torch.tensor([1.0, 0.5, 2.25]))
    torch.testing.assert_close(last.flatten(), torch.tensor([2.25]))


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_ssd_matches_loop(chunk):
    torch.manual_seed(0)
    b, l, h, p, g, n = 2, 19, 4, 3, 2, 5
    x = torch.randn(b, l, h, p, dtype=torch.float64)
    dt = F.softplus(torch.randn(b, l, h, dtype=torch.float64))
    A = -torch.rand(h, dtype=torch.float64) * 4
    B = torch.randn(b, l, g, n, dtype=torch.float64)
    C = torch.randn(b, l, g, n, dtype=torch.float64)
    y, last = ssd_chunked(x, dt, A, B, C, chunk_size=chunk)
    ref, S = naive_ssd(x, dt, A, B, C)
    assert y.dtype == last.dtype == torch.float64  # fp64 in, fp64 throughout
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, S, rtol=1e-10, atol=1e-10)


def test_mamba2_shapes_and_defaults():
    m = Mamba2(Mamba2Config(), 128, 64)
    assert (m.d_inner, m.n_heads, m.cfg.d_state) == (256, 8, 16)
    assert m(torch.randn(2, 5, 128)).shape == (2, 5, 128)
