"""sLSTM time loop (Triton) vs the layer's torch cell loop in fp64; fp32 inputs, tol 1e-4 rel
(measured ~5e-7 in the interpreter); fp16 inputs, tol 5e-3; per-member R under vmap (one launch)
vs a per-member loop of the torch loop."""
import pytest
import torch
from torch.func import vmap

from mad_bench.ops.slstm import slstm_scan
from mad_bench.ops.slstm.reference import slstm_scan_ref

from _kernel_test_utils import as64, check, grads, leaf, check_layer_paths

TOL = 1e-4


def _inputs(B, L, H, dh, device, dtype=torch.float32, scale=1.5):
    wx = torch.randn(B, L, H, 4 * dh, device=device) * scale
    wx[..., dh:2 * dh] += 2.0  # forget-gate bias, as the layer's init
    R = torch.randn(H, dh, 4 * dh, device=device) / dh**0.5
    return leaf(wx.to(dtype)), leaf(R.to(dtype))


def _run(wx, R, tol):
    h = slstm_scan(wx, R, impl="triton")
    wx64, R64 = as64([wx, R])
    h64 = slstm_scan_ref(wx64, R64)
    check(h, h64, tol, ["h"])
    dh = torch.randn_like(h, dtype=torch.float32)
    check(grads(h, [wx, R], dh.to(h.dtype)), grads(h64, [wx64, R64], dh.double()), tol, ["dwx", "dR"])


@pytest.mark.parametrize("B,L,H,dh", [(2, 19, 2, 8), (1, 37, 2, 12), (1, 19, 1, 16)])
def test_slstm_scan(device, B, L, H, dh):
    _run(*_inputs(B, L, H, dh, device), TOL)


def test_slstm_scan_large_preactivations_and_strided(device):
    # big gate pre-activations exercise the stabiliser; wx as a non-contiguous view
    B, L, H, dh = 1, 23, 2, 8
    wx, R = _inputs(B, L, H, dh, device, scale=6.0)
    base = leaf(wx.detach().transpose(1, 2).contiguous())  # [B, H, L, 4 dh]
    h = slstm_scan(base.transpose(1, 2), R, impl="triton")
    b64, R64 = as64([base, R])
    h64 = slstm_scan_ref(b64.transpose(1, 2), R64)
    check(h, h64, TOL, ["h"])
    dh_ = torch.randn_like(h)
    check(grads(h, [base, R], dh_), grads(h64, [b64, R64], dh_.double()), TOL, ["dwx", "dR"])


def test_slstm_scan_vmapped_members_one_launch(device, monkeypatch):
    # the engine's case: R vmapped over G members -> wx folds into the batch and R
    # [G, H, d_h, 4 d_h] goes to the kernel whole: one launch per direction, not G
    from mad_bench.ops.slstm import triton as slstm_triton

    calls = []
    fwd, bwd = slstm_triton.slstm_fwd, slstm_triton.slstm_bwd
    monkeypatch.setattr(slstm_triton, "slstm_fwd", lambda *a: calls.append("fwd") or fwd(*a))
    monkeypatch.setattr(slstm_triton, "slstm_bwd", lambda *a: calls.append("bwd") or bwd(*a))
    G, B, L, H, dh = 3, 2, 19, 2, 8
    wx, _ = _inputs(G * B, L, H, dh, device)
    wx = leaf(wx.detach().view(G, B, L, H, 4 * dh))
    R = leaf(torch.randn(G, H, dh, 4 * dh, device=device) / dh**0.5)
    h = vmap(lambda w, r: slstm_scan(w, r, impl="triton"))(wx, R)
    dh_ = torch.randn_like(h)
    g = grads(h, [wx, R], dh_)
    assert calls == ["fwd", "bwd"]
    wx64, R64 = as64([wx, R])
    h64 = torch.stack([slstm_scan_ref(wx64[i], R64[i]) for i in range(G)])
    check(h, h64, TOL, ["h"])
    check(g, grads(h64, [wx64, R64], dh_.double()), TOL, ["dwx", "dR"])


def test_slstm_scan_per_member_R_shape_is_checked(device):
    wx, _ = _inputs(4, 5, 2, 8, device)
    with pytest.raises(ValueError, match="one member count"):  # 3 members do not divide 4 rows
        slstm_scan(wx, torch.randn(3, 2, 8, 32, device=device), impl="triton")
    with pytest.raises(ValueError, match="R"):
        slstm_scan(wx, torch.randn(2, 8, 8, 32, device=device), impl="triton")


def test_slstm_scan_fp16(device):
    wx, R = _inputs(1, 19, 2, 8, device, dtype=torch.float16)
    h = slstm_scan(wx, R, impl="triton")
    assert h.dtype == torch.float16
    _run(wx, R, 5e-3)


def test_slstm_layer_triton_equals_torch(device):
    from mad_bench.configs.primitives.slstm import SLSTMConfig
    from mad_bench.primitives.sequence.slstm import SLSTM

    assert SLSTM.has_triton
    torch.manual_seed(0)
    ref = SLSTM(SLSTMConfig(impl="torch", n_heads=2), 24, 64).to(device)
    tri = SLSTM(SLSTMConfig(impl="triton", n_heads=2), 24, 64).to(device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 19, 24, device=device)
    check_layer_paths(ref, tri, x, 1e-5, 1e-4)
