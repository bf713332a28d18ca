"""RWKV-6 WKV (Triton) vs the step-by-step fp64 recurrence; fp32 inputs, tol 1e-4 rel (measured
~2e-7 in the interpreter); fp16 inputs, tol 5e-3; a per-member bonus under vmap (one launch) vs
a per-member loop of the oracle. The torch path is the chunked reference."""
import pytest
import torch
from torch.func import vmap

from mad_bench.ops.rwkv6 import wkv6, wkv6_chunked, wkv6_recurrent
from mad_bench.ops.rwkv6.naive import naive_wkv6

from _kernel_test_utils import as64, check, grads, leaf, check_layer_paths
from primitive_checks import add_noise, randomise

TOL = 1e-4
NAMES = ["dr", "dk", "dv", "dlogw", "du"]


def _inputs(B, H, L, K, V, device, dtype=torch.float32):
    r, k = (torch.randn(B, H, L, K, device=device) for _ in range(2))
    v = torch.randn(B, H, L, V, device=device)
    logw = -torch.exp(torch.randn(B, H, L, K, device=device) - 0.5)  # w in (0, 1), some near 0
    u = torch.randn(H, K, device=device) * 0.5
    return [leaf(t.to(dtype)) for t in (r, k, v, logw, u)]


def _run(ins, tol, views=None):
    o = wkv6(*(views or ins), impl="triton")
    ins64 = as64(ins)
    v64 = [t.transpose(1, 2) for t in ins64[:4]] + [ins64[4]] if views else ins64
    o64 = wkv6_recurrent(*v64)
    check(o, o64, tol, ["o"])
    do = torch.randn_like(o, dtype=torch.float32)
    check(grads(o, ins, do.to(o.dtype)), grads(o64, ins64, do.double()), tol, NAMES)


@pytest.mark.parametrize("B,H,L,K,V", [(2, 2, 19, 16, 16), (1, 2, 37, 12, 12), (1, 1, 37, 8, 20)])
def test_wkv6(device, B, H, L, K, V):
    # L = 37 > the backward's recompute chunk (32); V = 20 splits over two value blocks (16)
    _run(_inputs(B, H, L, K, V, device), TOL)


def test_wkv6_fp16_and_strided(device):
    # [B, L, H, K] tensors seen as [B, H, L, K] views (as in the RWKV6 layer)
    B, H, L, K = 1, 2, 23, 16
    ins = _inputs(B, H, L, K, K, device, dtype=torch.float16)
    base = [leaf(t.detach().transpose(1, 2).contiguous()) for t in ins[:4]] + [ins[4]]
    views = [t.transpose(1, 2) for t in base[:4]] + [base[4]]
    assert wkv6(*views, impl="triton").dtype == torch.float16
    _run(base, 5e-3, views=views)


def test_wkv6_vmapped_members_one_launch(device, monkeypatch):
    # the engine's case: the bonus u vmapped over G members -> r, k, v, logw fold into the batch
    # and u [G, H, K] goes to the kernel whole: one launch per direction, not G
    from mad_bench.ops.rwkv6 import triton as rwkv6_triton

    calls = []
    fwd, bwd = rwkv6_triton.wkv6_fwd, rwkv6_triton.wkv6_bwd
    monkeypatch.setattr(rwkv6_triton, "wkv6_fwd", lambda *a: calls.append("fwd") or fwd(*a))
    monkeypatch.setattr(rwkv6_triton, "wkv6_bwd", lambda *a: calls.append("bwd") or bwd(*a))
    G, B, H, L, K, V = 3, 2, 2, 19, 8, 20  # V 20: two value blocks (16)
    ins = _inputs(G * B, H, L, K, V, device)
    ins = [leaf(t.detach().view(G, B, *t.shape[1:])) for t in ins[:4]]
    u = leaf(torch.randn(G, H, K, device=device) * 0.5)
    o = vmap(lambda r, k, v, w, uu: wkv6(r, k, v, w, uu, impl="triton"))(*ins, u)
    do = torch.randn_like(o)
    g = grads(o, [*ins, u], do)
    assert calls == ["fwd", "bwd"]
    ins64 = as64([*ins, u])
    o64 = torch.stack([naive_wkv6(*(t[i] for t in ins64)) for i in range(G)])
    check(o, o64, TOL, ["o"])
    check(g, grads(o64, ins64, do.double()), TOL, NAMES)


def test_wkv6_per_member_bonus_shape_is_checked(device):
    r, k, v, logw, _ = _inputs(4, 2, 5, 8, 8, device)
    with pytest.raises(ValueError, match="one member count"):  # 3 members do not divide 4 rows
        wkv6(r, k, v, logw, torch.randn(3, 2, 8, device=device), impl="triton")
    with pytest.raises(ValueError, match="u"):
        wkv6(r, k, v, logw, torch.randn(2, 3, 8, device=device), impl="triton")


def test_torch_impl_is_the_chunked_reference():
    ins = [t.detach() for t in _inputs(1, 2, 21, 8, 8, "cpu")]
    o = wkv6(*ins, impl="torch")
    assert torch.equal(o, wkv6_chunked(*ins, 16))
    check(o, wkv6_recurrent(*as64(ins)), 1e-5)


def test_rwkv6_layer_triton_equals_torch(device):
    from mad_bench.configs.primitives.rwkv6 import RWKV6Config
    from mad_bench.primitives.sequence.rwkv6 import RWKV6

    assert RWKV6.has_triton
    torch.manual_seed(0)
    ref = RWKV6(RWKV6Config(impl="torch", head_dim=8), 24, 64).to(device)
    tri = RWKV6(RWKV6Config(impl="triton", head_dim=8), 24, 64).to(device)
    randomise(ref, add_noise(0.1))  # move the tiny init away from zero: every path carries gradient
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 19, 24, device=device)
    check_layer_paths(ref, tri, x, 1e-5, 1e-4)
