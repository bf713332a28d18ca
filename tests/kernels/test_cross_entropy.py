"""Fused cross-entropy vs F.cross_entropy in fp64. fp32, tol 1e-5 rel."""
import math

import pytest
import torch

from mad_bench.kernels.cross_entropy import cross_entropy, cross_entropy_ref

from _kernel_test_utils import as64, check, leaf

TOL = 1e-5


@pytest.mark.parametrize("V", [24, 37, 300])
@pytest.mark.parametrize("with_ignore", [False, True])
def test_cross_entropy(device, V, with_ignore):
    x = leaf(torch.randn(3, 13, V, device=device) * 2)
    t = torch.randint(0, V, (3, 13), device=device)
    if with_ignore:
        t[0, :5] = -100
        t[2, -1] = -100
    loss = cross_entropy(x, t, impl="triton")
    (x64,) = as64([x])
    loss64 = cross_entropy_ref(x64, t)
    check(loss, loss64, TOL, ["loss"])
    scale = torch.rand((), device=device) + 0.5  # non-unit upstream gradient
    (gx,) = torch.autograd.grad(loss * scale, x)
    (gx64,) = torch.autograd.grad(loss64 * scale.double(), x64)
    check(gx, gx64, TOL, ["dlogits"])


def test_cross_entropy_all_ignored(device):
    x = torch.randn(4, 24, device=device)
    t = torch.full((4,), -100, device=device)
    assert math.isnan(cross_entropy(x, t, impl="triton").item())
