"""Fused SwiGLU vs the fp64 torch reference. fp32, tol 1e-6 rel."""
import pytest
import torch

from mad_bench.kernels.swiglu import swiglu, swiglu_ref

from _kernel_test_utils import as64, check, grads, leaf

TOL = 1e-6


@pytest.mark.parametrize("shape", [(2, 19, 24), (37, 40), (3, 7, 300)])
def test_swiglu(device, shape):
    g = leaf(torch.randn(shape, device=device) * 3)
    u = leaf(torch.randn(shape, device=device))
    y = swiglu(g, u, impl="triton")
    g64, u64 = as64([g, u])
    y64 = swiglu_ref(g64, u64)
    check(y, y64, TOL)
    dy = torch.randn_like(y)
    check(grads(y, (g, u), dy), grads(y64, (g64, u64), dy.double()), TOL, ["dgate", "dup"])


def test_swiglu_strided_chunk(device):
    z = leaf(torch.randn(2, 11, 2 * 40, device=device))
    g, u = z.chunk(2, dim=-1)
    y = swiglu(g, u, impl="triton")
    (z64,) = as64([z])
    g64, u64 = z64.chunk(2, dim=-1)
    y64 = swiglu_ref(g64, u64)
    check(y, y64, TOL)
    dy = torch.randn_like(y)
    check(grads(y, (z,), dy), grads(y64, (z64,), dy.double()), TOL, ["dz"])
