"""Causal depthwise short conv (+ bias, silu) vs F.conv1d in fp64. fp32, tol 1e-5 rel."""
import pytest
import torch

from mad_bench.kernels.short_conv import short_conv, short_conv_ref

from _kernel_test_utils import as64, check, grads, leaf

TOL = 1e-5


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("B,L,D,K", [(2, 37, 24, 3), (1, 70, 40, 4)])
def test_short_conv(device, activation, with_bias, B, L, D, K):
    x = leaf(torch.randn(B, L, D, device=device))
    w = leaf(torch.randn(D, K, device=device) / K)
    b = leaf(torch.randn(D, device=device)) if with_bias else None
    y = short_conv(x, w, b, activation, impl="triton")
    x64, w64, b64 = as64([x, w, b])
    y64 = short_conv_ref(x64, w64, b64, activation)
    check(y, y64, TOL, ["y"])
    dy = torch.randn_like(y)
    ins = [t for t in (x, w, b) if t is not None]
    ins64 = [t for t in (x64, w64, b64) if t is not None]
    check(grads(y, ins, dy), grads(y64, ins64, dy.double()), TOL, ["dx", "dw", "db"])


def test_short_conv_strided_input_and_conv1d_weight(device):
    D, K = 24, 4
    z = leaf(torch.randn(2, 19, 2 * D, device=device))
    x, _ = z.chunk(2, dim=-1)  # row-strided view, as after an in-projection
    w = leaf(torch.randn(D, 1, K, device=device))  # nn.Conv1d layout
    y = short_conv(x, w, None, "silu", impl="triton")
    z64, w64 = as64([z, w])
    y64 = short_conv_ref(z64.chunk(2, dim=-1)[0], w64, None, "silu")
    check(y, y64, TOL)
    dy = torch.randn_like(y)
    check(grads(y, (z, w), dy), grads(y64, (z64, w64), dy.double()), TOL, ["dz", "dw"])


def test_bad_activation():
    with pytest.raises(ValueError):
        short_conv(torch.randn(1, 4, 8), torch.randn(8, 3), activation="gelu", impl="torch")
