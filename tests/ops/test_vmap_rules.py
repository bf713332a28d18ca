"""Triton ops under ``torch.func.vmap`` (the ensemble engine): the fold rule (members folded into
the batch, one launch) and the loop rule (a per-member parameter) give each member's output and
gradients exactly as separate calls do."""
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
