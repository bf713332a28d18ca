"""Causal depthwise short conv (+ bias, silu): the Triton kernel vs the reference (F.conv1d)
in fp64, fp32, tol 1e-5 rel; the step form vs the parallel form; the auto dispatch rule."""
import pytest
import torch

from mad_bench.ops import causal_conv
from mad_bench.ops.causal_conv import causal_conv1d, causal_conv1d_step
from mad_bench.ops.causal_conv.reference import causal_conv1d as causal_conv1d_ref

from _kernel_test_utils import as64, check, grads, leaf

TOL = 1e-5


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("B,L,D,K", [(2, 37, 24, 3), (1, 70, 40, 4)])
def test_causal_conv(device, activation, with_bias, B, L, D, K):
    x = leaf(torch.randn(B, L, D, device=device))
    w = leaf(torch.randn(D, K, device=device) / K)
    b = leaf(torch.randn(D, device=device)) if with_bias else None
    y = causal_conv1d(x, w, b, activation, impl="triton")
    x64, w64, b64 = as64([x, w, b])
    y64 = causal_conv1d_ref(x64, w64, b64, activation == "silu")
    check(y, y64, TOL, ["y"])
    dy = torch.randn_like(y)
    ins = [t for t in (x, w, b) if t is not None]
    ins64 = [t for t in (x64, w64, b64) if t is not None]
    check(grads(y, ins, dy), grads(y64, ins64, dy.double()), TOL, ["dx", "dw", "db"])


def test_causal_conv_strided_input_and_conv1d_weight(device):
    D, K = 24, 4
    z = leaf(torch.randn(2, 19, 2 * D, device=device))
    x, _ = z.chunk(2, dim=-1)  # row-strided view, as after an in-projection
    w = leaf(torch.randn(D, 1, K, device=device))  # nn.Conv1d layout
    y = causal_conv1d(x, w, None, "silu", impl="triton")
    z64, w64 = as64([z, w])
    y64 = causal_conv1d_ref(z64.chunk(2, dim=-1)[0], w64, None, True)
    check(y, y64, TOL)
    dy = torch.randn_like(y)
    check(grads(y, (z, w), dy), grads(y64, (z64, w64), dy.double()), TOL, ["dz", "dw"])


def test_bad_activation():
    with pytest.raises(ValueError):
        causal_conv1d(torch.randn(1, 4, 8), torch.randn(8, 3), activation="gelu", impl="torch")


@pytest.mark.parametrize("width", [2, 3])  # cache of K - 1 inputs (most layers) or K (mamba's)
def test_step_equals_parallel(width):
    B, L, D, K = 2, 9, 5, 3
    x, w, b = torch.randn(B, L, D), torch.randn(D, 1, K), torch.randn(D)
    y = causal_conv1d(x, w, b, impl="torch")
    cache, ys = torch.zeros(B, D, width), []
    for t in range(L):
        y_t, cache = causal_conv1d_step(x[:, t], cache, w, b)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    assert cache.shape == (B, D, width)


def test_auto_runs_triton_only_from_the_measured_length(monkeypatch):
    """impl 'auto' picks the kernel where it won (L >= 1024 on an H200), torch below."""
    calls = []
    monkeypatch.setattr(causal_conv, "causal_conv1d_triton", lambda *a: calls.append(a[0].shape[1]))
    monkeypatch.setattr(causal_conv, "use_triton", lambda impl, x, auto=True: auto)
    x, w = torch.randn(1, causal_conv.TRITON_MIN_LEN - 1, 4), torch.randn(4, 1, 3)
    y = causal_conv1d(x, w)
    assert calls == [] and torch.equal(y, causal_conv1d_ref(x, w))
    causal_conv1d(torch.randn(1, causal_conv.TRITON_MIN_LEN, 4), w)
    assert calls == [causal_conv.TRITON_MIN_LEN]
