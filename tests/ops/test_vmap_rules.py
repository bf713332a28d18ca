"""Triton ops under ``torch.func.vmap`` (the ensemble engine): the fold rule (members folded into
the batch, one launch) and the loop rule (a per-member parameter) give each member's output and
gradients exactly as separate calls do; each layer with a Triton kernel launches it once per call
site under the engine's vmap, and its vmapped forward + backward compiles as one graph."""
import pytest
import torch
from torch.func import vmap

from _kernel_test_utils import check, leaf
from mad_bench.ops.gla import chunk_simple_gla
from mad_bench.ops.vmap_rules import register_fold


@torch.library.custom_op("mad_bench_test::scale_with_state", mutates_args=())
def _scale_with_state(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A custom op like the kernels': ``y = x * w`` (``w[D]`` shared), ``h = sum_t x``."""
    return x * w, x.sum(1)


@_scale_with_state.register_fake
def _(x, w):
    return x.new_empty(x.shape), x.new_empty(x.shape[0])


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gy, gh):
    x, w = ctx.saved_tensors
    return gy * w + gh[:, None], (gy * x).sum(0)


_scale_with_state.register_autograd(_backward, setup_context=_setup)
register_fold(_scale_with_state, fold_args=(0,))


def _loss(y, h):
    return y.square().sum() + (h * torch.arange(h.numel(), dtype=h.dtype).view_as(h)).sum()


@pytest.mark.parametrize("rule", ["fold", "loop"])
def test_rules_equal_separate_calls(rule, monkeypatch):
    torch.manual_seed(0)
    G, B, D = 3, 4, 5
    x = torch.randn(B, D)
    P, w = torch.randn(G, D), torch.randn(G if rule == "loop" else 1, D)
    Pv, wv = leaf(P), leaf(w)
    if rule == "fold":  # the activation is per member, the parameter shared: one folded call
        y, h = vmap(lambda p: _scale_with_state(x * p, wv[0]))(Pv)
    else:  # the parameter is per member and not a member arg: one call per member
        y, h = vmap(lambda p, ww: _scale_with_state(x * p, ww))(Pv, wv)
    sum(_loss(y[g], h[g]) for g in range(G)).backward()
    Ps, ws = leaf(P), leaf(w)
    outs = [_scale_with_state(x * Ps[g], ws[0 if rule == "fold" else g]) for g in range(G)]
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


# each kernel's forward launch, by (module, name): a launcher function or an autograd.Function
_KERNELS = {
    "conv": ("mad_bench.ops.causal_conv.triton", "short_conv_fwd"),
    "scan": ("mad_bench.ops.selective_scan.triton", "_ss_fwd"),
    "wkv6": ("mad_bench.ops.rwkv6.triton", "wkv6_fwd"),
    "slstm": ("mad_bench.ops.slstm.triton", "slstm_fwd"),
    "attn": ("mad_bench.ops.attention.triton", "short_attention_fwd"),  # L 19: the short path
    "linear-attn": ("mad_bench.ops.gla.triton", "_fwd"),
    "gla": ("mad_bench.ops.gla.two_level", "_fwd"),
    "delta": ("mad_bench.ops.delta_rule.triton", "_dr_fwd"),
    "gated-delta": ("mad_bench.ops.gated_delta_rule.triton", "_gdr_fwd"),
    "mlstm": ("mad_bench.ops.mlstm.triton", "_fwd"),
}
# (module, layer, config, config overrides, its kernels, one name per call site): layers whose
# kernels take per-member parameters, then layers whose kernels take only activations (folded
# into the batch)
_LAYERS = {
    "short-conv": ("short_conv", "ShortConv", "ShortConvConfig", {}, ["conv"]),
    "hyena": ("hyena", "Hyena", "HyenaConfig", {}, ["conv"]),
    "mamba": ("mamba", "Mamba", "MambaConfig", {}, ["conv", "scan"]),
    "rwkv6": ("rwkv6", "RWKV6", "RWKV6Config", {"head_dim": 8}, ["wkv6"]),
    "slstm": ("slstm", "SLSTM", "SLSTMConfig", {"n_heads": 2}, ["slstm"]),
    "attention": ("attention", "Attention", "AttentionConfig", {"n_heads": 2}, ["attn"]),
    "sliding-window-attention": ("sliding_window_attention", "SlidingWindowAttention",
                                 "SlidingWindowAttentionConfig", {"n_heads": 2, "window": 5}, ["attn"]),
    "gated-linear-attention": ("gla", "GatedLinearAttention", "GatedLinearAttentionConfig", {"n_heads": 2},
                               ["gla"]),
    "linear-attention": ("linear_attention", "LinearAttention", "LinearAttentionConfig", {"n_heads": 2},
                         ["linear-attn"]),
    "retnet": ("retnet", "RetNet", "RetNetConfig", {"n_heads": 2}, ["linear-attn"]),
    "deltanet": ("deltanet", "DeltaNet", "DeltaNetConfig", {"n_heads": 2}, ["conv"] * 3 + ["delta"]),
    "gated-deltanet": ("gated_deltanet", "GatedDeltaNet", "GatedDeltaNetConfig", {"head_dim": 8},
                       ["conv"] * 3 + ["gated-delta"]),
    "mlstm": ("mlstm", "MLSTM", "MLSTMConfig", {"n_heads": 2}, ["conv", "mlstm"]),
}


def layer_of(name: str, impl: str, D: int = 16, max_len: int = 32):
    """A fresh layer of :data:`_LAYERS` entry ``name`` with ``impl``."""
    import importlib

    module, layer, config, kw, _ = _LAYERS[name]
    mod = importlib.import_module(f"mad_bench.primitives.sequence.{module}")
    return getattr(mod, layer)(getattr(mod, config)(impl=impl, **kw), D, max_len)


def count_launches(monkeypatch, calls: dict) -> None:
    """Count each kernel of :data:`_KERNELS` into ``calls`` as it launches its forward."""
    import importlib

    for key, (module, name) in _KERNELS.items():
        mod = importlib.import_module(module)
        target = getattr(mod, name)
        if isinstance(target, type):  # an autograd.Function: count its forward
            fwd = target.forward
            monkeypatch.setattr(target, "forward", staticmethod(
                lambda *a, _f=fwd, _k=key: calls.__setitem__(_k, calls.get(_k, 0) + 1) or _f(*a)))
        else:
            monkeypatch.setattr(mod, name,
                                lambda *a, _f=target, _k=key, **kw: calls.__setitem__(_k, calls.get(_k, 0) + 1)
                                or _f(*a, **kw))


@pytest.mark.parametrize("name", list(_LAYERS))
def test_layer_under_engine_vmap_launches_each_kernel_once(device, monkeypatch, name):
    """The engine's call (vmap of functional_call over stacked members, x shared) on a layer's
    Triton path: each kernel launches once per call site for all G members, and the output and every
    parameter's gradient equal the per-member loop of the layer's torch path."""
    from torch.func import functional_call, stack_module_state

    calls = {}
    count_launches(monkeypatch, calls)
    kernels = _LAYERS[name][4]
    torch.manual_seed(0)
    G, B, L, D = 3, 2, 19, 16
    members = []
    for _ in range(G):
        m = layer_of(name, "torch", D).to(device)
        with torch.no_grad():  # members differ, and a tiny init's zeros carry gradient
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        members.append(m)
    tri = layer_of(name, "triton", D).to(device)
    params, buffers = stack_module_state(members)
    x = torch.randn(B, L, D, device=device)
    y = vmap(lambda p, b, xx: functional_call(tri, (p, b), (xx,)), in_dims=(0, 0, None))(params, buffers, x)
    assert calls == {k: kernels.count(k) for k in kernels}
    yl = torch.stack([m(x) for m in members])
    check(y, yl, 1e-5, ["y"])
    dy = torch.randn_like(y)
    names = list(params)
    gv = torch.autograd.grad(y, [params[n] for n in names], dy)
    gl = torch.autograd.grad(yl, [p for m in members for p in m.parameters()], dy)
    k = len(names)
    for i, n in enumerate(names):
        check(gv[i], torch.stack(gl[i::k]), 1e-4, [n])


@pytest.mark.parametrize("name", list(_LAYERS))
def test_layer_under_engine_vmap_compiles_as_one_graph(device, name):
    """torch.compile of the engine's vmapped forward + backward on a layer's Triton path traces
    the whole layer as one graph (``fullgraph``: a kernel that breaks the graph raises), and the
    compiled output and gradients equal the eager ones."""
    from torch.func import functional_call, stack_module_state

    torch.manual_seed(0)
    G, B, L, D = 2, 2, 9, 16
    members = [layer_of(name, "triton", D).to(device) for _ in range(G)]
    params, buffers = stack_module_state(members)
    x = torch.randn(B, L, D, device=device)

    def loss(p):
        y = vmap(lambda pp, b, xx: functional_call(members[0], (pp, b), (xx,)), in_dims=(0, 0, None))(p, buffers, x)
        return (y.float() ** 2).sum()

    names = list(params)
    ref = torch.autograd.grad(loss(params), [params[n] for n in names])
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(params), [params[n] for n in names])
    for n, a, b in zip(names, got, ref):
        check(a, b, 1e-5, [n])
