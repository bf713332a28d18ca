"""Causal softmax attention for small heads: the Triton kernel and the torch reference (SDPA)
against the position-by-position oracle (naive.py) in fp64, forward and every gradient,
causal and windowed, lengths that are not multiples of the block; under vmap (members folded
into the batch) against a per-member loop; the auto dispatch rule."""
import pytest
import torch

from mad_bench.ops.attention import causal_attention
from mad_bench.ops.attention.naive import naive_causal_attention
from mad_bench.ops.attention.reference import attention_torch

from _kernel_test_utils import as64, check, grads, leaf

TOL = 2e-5


@pytest.mark.parametrize("window", [None, 5, 20])
@pytest.mark.parametrize("B,H,L,D", [(1, 2, 37, 8), (2, 1, 70, 16), (1, 1, 16, 12)])
def test_triton_attention_equals_the_oracle(device, window, B, H, L, D):
    q, k, v = (leaf(torch.randn(B, H, L, D, device=device)) for _ in range(3))
    o = causal_attention(q, k, v, window, impl="triton")
    q64, k64, v64 = as64([q, k, v])
    o64 = naive_causal_attention(q64, k64, v64, window)
    check(o, o64, TOL, ["o"])
    do = torch.randn_like(o)
    check(grads(o, [q, k, v], do), grads(o64, [q64, k64, v64], do.double()), TOL, ["dq", "dk", "dv"])


@pytest.mark.parametrize("window", [None, 3])
def test_torch_reference_equals_the_oracle_in_fp64(window):
    q, k, v = (leaf(torch.randn(2, 2, 11, 8, dtype=torch.float64)) for _ in range(3))
    o = attention_torch(q, k, v, window)
    q2, k2, v2 = (leaf(t.detach()) for t in (q, k, v))
    ref = naive_causal_attention(q2, k2, v2, window)
    assert o.dtype == torch.float64
    check(o, ref, 1e-12, ["o"])
    do = torch.randn_like(o)
    check(grads(o, [q, k, v], do), grads(ref, [q2, k2, v2], do), 1e-10, ["dq", "dk", "dv"])


def test_triton_attention_under_vmap_folds_the_members(device):
    G, B, H, L, D = 3, 1, 2, 20, 8
    q, k = leaf(torch.randn(G, B, H, L, D, device=device)), leaf(torch.randn(G, B, H, L, D, device=device))
    v = leaf(torch.randn(B, H, L, D, device=device))  # shared by the members: expanded
    fn = lambda a, b, c: causal_attention(a, b, c, None, impl="triton")  # noqa: E731
    o = torch.func.vmap(fn, in_dims=(0, 0, None))(q, k, v)
    ref = torch.stack([naive_causal_attention(*as64([q[g], k[g], v])) for g in range(G)])
    check(o, ref, TOL, ["o"])
    do = torch.randn_like(o)
    got = grads(o, [q, k, v], do)
    q64, k64, v64 = as64([q, k, v])
    ref = torch.stack([naive_causal_attention(q64[g], k64[g], v64, None) for g in range(G)])
    check(got, grads(ref, [q64, k64, v64], do.double()), TOL, ["dq", "dk", "dv"])


def test_auto_dispatch_keeps_fp64_and_cpu_on_torch_and_checks_the_window():
    q = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    assert torch.equal(causal_attention(q, q, q), attention_torch(q, q, q))
    with pytest.raises(ValueError, match="window must be >= 1"):
        causal_attention(q, q, q, window=0)
