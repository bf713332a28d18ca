"""The chunked forms of the linear recurrences shared by several primitives (ops gla and
delta_rule: gated, scalar-decay and plain linear attention, the delta rule) against their
token-by-token loops."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.delta_rule.reference import chunk_delta_rule, recurrent_delta_rule
from mad_bench.ops.gla.reference import chunk_gla, chunk_simple_gla, recurrent_gla, recurrent_simple_gla


def test_chunk_functions_by_hand():
    # GLA, one head, K = V = 1: S_0 = 1*3 = 3; S_1 = 0.5*3 + 2*4 = 9.5; o = q * S
    q = torch.tensor([1.0, 1.0]).view(1, 1, 2, 1)
    k = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1)
    v = torch.tensor([3.0, 4.0]).view(1, 1, 2, 1)
    log_g = torch.full((1, 1, 2, 1), math.log(0.5))
    o = chunk_gla(q, k, v, log_g, chunk_size=16, sub_chunk_size=1)
    assert torch.allclose(o.flatten(), torch.tensor([3.0, 9.5]))
    o = chunk_simple_gla(q, k, v, log_g[..., 0], scale=2.0, chunk_size=1)
    assert torch.allclose(o.flatten(), torch.tensor([6.0, 19.0]))
    o = chunk_simple_gla(q, k, v, None)  # plain: 3, 3 + 8
    assert torch.allclose(o.flatten(), torch.tensor([3.0, 11.0]))
    # delta rule with beta = 1 overwrites the value stored at a key; beta = 0.5 moves halfway
    e1 = torch.tensor([1.0, 0.0])
    qk = torch.stack([e1, e1]).view(1, 1, 2, 2)
    vals = torch.tensor([[1.0, 2.0], [5.0, -1.0]]).view(1, 1, 2, 2)
    o = chunk_delta_rule(qk, qk, vals, torch.ones(1, 1, 2))
    assert torch.allclose(o[0, 0], vals[0, 0])
    o = chunk_delta_rule(qk, qk, vals, torch.full((1, 1, 2), 0.5))
    s1 = 0.5 * vals[0, 0, 0]
    assert torch.allclose(o[0, 0], torch.stack([s1, s1 + 0.5 * (vals[0, 0, 1] - s1)]))
    # a key orthogonal to the stored one leaves it alone
    qk2 = torch.stack([e1, torch.tensor([0.0, 1.0])]).view(1, 1, 2, 2)
    o = chunk_delta_rule(qk2[:, :, [0, 0]], qk2, vals, torch.ones(1, 1, 2))
    assert torch.allclose(o[0, 0, 1], vals[0, 0, 0])


@pytest.mark.parametrize("chunk,sub", [(4, 2), (8, 8), (64, 16)])
def test_chunk_functions_match_loops(chunk, sub):
    g = torch.Generator().manual_seed(0)
    Bq, H, T, K, V = 2, 2, 19, 4, 3
    q, k = torch.randn(Bq, H, T, K, generator=g), torch.randn(Bq, H, T, K, generator=g)
    v = torch.randn(Bq, H, T, V, generator=g)
    S0 = torch.randn(Bq, H, K, V, generator=g)
    log_g = F.logsigmoid(torch.randn(Bq, H, T, K, generator=g) * 4)
    beta = torch.rand(Bq, H, T, generator=g)
    kn = F.normalize(k, dim=-1)

    def close(a, b):
        assert torch.allclose(a[0], b[0], atol=1e-5, rtol=1e-4)
        assert torch.allclose(a[1], b[1], atol=1e-5, rtol=1e-4)

    close(chunk_gla(q, k, v, log_g, 0.7, chunk, sub, S0, True),
          recurrent_gla(q, k, v, log_g, 0.7, S0))
    close(chunk_simple_gla(q, k, v, log_g[..., 0], 0.7, chunk, S0, True),
          recurrent_simple_gla(q, k, v, log_g[..., 0], 0.7, S0))
    close(chunk_simple_gla(q, k, v, None, 0.7, chunk, S0, True),
          recurrent_simple_gla(q, k, v, None, 0.7, S0))
    close(chunk_delta_rule(q, kn, v, beta, 0.7, chunk, S0, True),
          recurrent_delta_rule(q, kn, v, beta, 0.7, S0))
