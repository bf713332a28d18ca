"""Triton ops under ``torch.func.vmap`` (the ensemble engine): the fold rule (members folded into
the batch, one launch) and the loop rule (a per-member parameter) give each member's output and
gradients exactly as separate calls do; layers whose kernels take per-member parameters launch
each kernel once under the engine's vmap."""
import pytest
import torch
from torch.func import vmap

from _kernel_test_utils import check, leaf
from mad_bench.ops.gla import chunk_simple_gla
from mad_bench.ops.vmap_rules import vmap_apply


class _ScaleWithState(torch.autograd.Function):
    """An old-style Function like the kernels': ``y = x * w`` (``w[D]`` shared), ``h = sum_t x``."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w, x.sum(1)

    @staticmethod
    def backward(ctx, gy, gh):
        x, w = ctx.saved_tensors
        return gy * w + gh[:, None], (gy * x).sum(0)


def _loss(y, h):
    return y.square().sum() + (h * torch.arange(h.numel(), dtype=h.dtype).view_as(h)).sum()


@pytest.mark.parametrize("rule", ["fold", "loop"])
def test_rules_equal_separate_calls(rule):
    torch.manual_seed(0)
    G, B, D = 3, 4, 5
    x = torch.randn(B, D)
    P, w = torch.randn(G, D), torch.randn(G if rule == "loop" else 1, D)
    Pv, wv = leaf(P), leaf(w)
    if rule == "fold":  # the activation is per member, the parameter shared: one folded call
        y, h = vmap(lambda p: vmap_apply(_ScaleWithState.apply, x * p, wv[0], fold_args=(0,)))(Pv)
    else:  # the parameter is per member: one call per member
        y, h = vmap(lambda p, ww: vmap_apply(_ScaleWithState.apply, x * p, ww, fold_args=(0,)))(Pv, wv)
    sum(_loss(y[g], h[g]) for g in range(G)).backward()
    Ps, ws = leaf(P), leaf(w)
    outs = [_ScaleWithState.apply(x * Ps[g], ws[0 if rule == "fold" else g]) for g in range(G)]
    sum(_loss(*o) for o in outs).backward()
    assert torch.allclose(y, torch.stack([o[0] for o in outs]))
    assert torch.allclose(Pv.grad, Ps.grad, atol=1e-6)
    assert torch.allclose(wv.grad, ws.grad, atol=1e-6)


def test_chunk_simple_gla_kernel_under_vmap_folds_members(device):
    """The Triton kernel vmapped over members equals its per-member calls (values and grads)."""
    torch.manual_seed(1)
    G, B, H, L, K = 2, 1, 2, 19, 8
    x = torch.randn(B, H, L, K, device=device)
    Wq, Wk, Wv = (torch.randn(G, K, K, device=device) * 0.3 for _ in range(3))
    log_g = -torch.rand(B, H, L, device=device) * 0.3

    def member(wq, wk, wv):
        return chunk_simple_gla(x @ wq, x @ wk, x @ wv, log_g, impl="triton")

    ws = [leaf(w) for w in (Wq, Wk, Wv)]
    y = vmap(member)(*ws)
    go = torch.randn_like(y)
    gv = torch.autograd.grad(y, ws, go)
    wl = [leaf(w) for w in (Wq, Wk, Wv)]
    yl = torch.stack([member(*(w[g] for w in wl)) for g in range(G)])
    gl = torch.autograd.grad(yl, wl, go)
    check([y, *gv], [yl, *gl], 1e-5, ["y", "dWq", "dWk", "dWv"])


# (module, layer, config, config overrides, its kernels): layers whose kernels take per-member parameters
_LAYERS = {
    "short-conv": ("short_conv", "ShortConv", "ShortConvConfig", {}, ["ShortConvFunction"]),
    "hyena": ("hyena", "Hyena", "HyenaConfig", {}, ["ShortConvFunction"]),
    "mamba": ("mamba", "Mamba", "MambaConfig", {}, ["ShortConvFunction", "SelectiveScanFunction"]),
    "rwkv6": ("rwkv6", "RWKV6", "RWKV6Config", {"head_dim": 8}, ["WKV6Function"]),
    "slstm": ("slstm", "SLSTM", "SLSTMConfig", {"n_heads": 2}, ["SLSTMScanFunction"]),
}


@pytest.mark.parametrize("name", list(_LAYERS))
def test_layer_under_engine_vmap_launches_each_kernel_once(device, monkeypatch, name):
    """The engine's call (vmap of functional_call over stacked members, x shared) on a layer's
    Triton path: each kernel launches once for all G members, and the output and every
    parameter's gradient equal the per-member loop of the layer's torch path."""
    import importlib

    from torch.func import functional_call, stack_module_state

    from mad_bench.ops.causal_conv.triton import ShortConvFunction
    from mad_bench.ops.rwkv6.triton import WKV6Function
    from mad_bench.ops.selective_scan.triton import SelectiveScanFunction
    from mad_bench.ops.slstm.triton import SLSTMScanFunction

    calls = {}
    for fn in (ShortConvFunction, SelectiveScanFunction, WKV6Function, SLSTMScanFunction):
        fwd = fn.forward
        monkeypatch.setattr(fn, "forward", staticmethod(
            lambda *a, _f=fwd, _n=fn.__name__: calls.__setitem__(_n, calls.get(_n, 0) + 1) or _f(*a)))
    module, layer, config, kw, kernels = _LAYERS[name]
    mod = importlib.import_module(f"mad_bench.primitives.sequence.{module}")
    Layer, Cfg = getattr(mod, layer), getattr(mod, config)
    torch.manual_seed(0)
    G, B, L, D = 3, 2, 19, 16
    members = []
    for _ in range(G):
        m = Layer(Cfg(impl="torch", **kw), D, 32).to(device)
        with torch.no_grad():  # members differ, and a tiny init's zeros carry gradient
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        members.append(m)
    tri = Layer(Cfg(impl="triton", **kw), D, 32).to(device)
    params, buffers = stack_module_state(members)
    x = torch.randn(B, L, D, device=device)
    y = vmap(lambda p, b, xx: functional_call(tri, (p, b), (xx,)), in_dims=(0, 0, None))(params, buffers, x)
    assert calls == {k: 1 for k in kernels}
    yl = torch.stack([m(x) for m in members])
    check(y, yl, 1e-5, ["y"])
    dy = torch.randn_like(y)
    names = list(params)
    gv = torch.autograd.grad(y, [params[n] for n in names], dy)
    gl = torch.autograd.grad(yl, [p for m in members for p in m.parameters()], dy)
    k = len(names)
    for i, n in enumerate(names):
        check(gv[i], torch.stack(gl[i::k]), 1e-4, [n])
