"""Causal depthwise short conv (+ bias, silu): the Triton kernel vs the reference (F.conv1d)
in fp64, fp32, tol 1e-5 rel; per-member weight / bias under vmap (one launch) vs a per-member
loop of the oracle; the step form vs the parallel form; the auto dispatch rule."""
import pytest
import torch
from torch.func import vmap

from mad_bench.ops import causal_conv
from mad_bench.ops.causal_conv import causal_conv1d, causal_conv1d_step
from mad_bench.ops.causal_conv.naive import naive_causal_conv1d
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


@pytest.mark.parametrize("per_member", ["weight+bias", "weight", "bias"])
def test_causal_conv_vmapped_members_one_launch(device, monkeypatch, per_member):
    # the engine's case: G members' parameters vmapped -> x folds into the batch, the weight
    # [G, D, K] / bias [G, D] go to the kernel whole: one launch per direction, not G
    from mad_bench.ops.causal_conv import triton as conv_triton

    calls = []
    for name in ("short_conv_fwd", "short_conv_bwd"):
        fn = getattr(conv_triton, name)
        monkeypatch.setattr(conv_triton, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    G, B, L, D, K = 3, 2, 37, 24, 4  # L 37: two time tiles of 32
    x = leaf(torch.randn(G, B, L, D, device=device))
    w = leaf(torch.randn(G if "weight" in per_member else 1, D, 1, K, device=device) / K)
    b = leaf(torch.randn(G if "bias" in per_member else 1, D, device=device))
    wm = (lambda g: w[g]) if "weight" in per_member else (lambda g: w[0])
    bm = (lambda g: b[g]) if "bias" in per_member else (lambda g: b[0])

    def member(xx, ww, bb):
        return causal_conv1d(xx, ww, bb, "silu", impl="triton")

    y = vmap(member, in_dims=(0, 0 if "weight" in per_member else None, 0 if "bias" in per_member else None))(
        x, w if "weight" in per_member else w[0], b if "bias" in per_member else b[0])
    dy = torch.randn_like(y)
    g = grads(y, (x, w, b), dy)
    assert calls == ["short_conv_fwd", "short_conv_bwd"]
    x64, w64, b64 = as64([x, w, b])
    wm64 = (lambda g: w64[g]) if "weight" in per_member else (lambda g: w64[0])
    bm64 = (lambda g: b64[g]) if "bias" in per_member else (lambda g: b64[0])
    y64 = torch.stack([naive_causal_conv1d(x64[i], wm64(i), bm64(i), "silu") for i in range(G)])
    check(y, y64, TOL, ["y"])
    check(g, grads(y64, (x64, w64, b64), dy.double()), TOL, ["dx", "dw", "db"])


def test_causal_conv_per_member_shapes_are_checked(device):
    x = torch.randn(4, 9, 8, device=device)
    with pytest.raises(ValueError, match="one member count"):  # 3 members do not divide 4 rows
        causal_conv1d(x, torch.randn(3, 8, 4, device=device), impl="triton")
    with pytest.raises(ValueError, match="one member count"):  # weight and bias disagree
        causal_conv1d(x, torch.randn(2, 8, 4, device=device), torch.randn(4, 8, device=device), impl="triton")
    with pytest.raises(ValueError, match="D = 8"):
        causal_conv1d(x, torch.randn(2, 6, 4, device=device), impl="triton")


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
