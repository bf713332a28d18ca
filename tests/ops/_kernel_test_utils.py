"""Comparison helpers for the kernel tests (imported by module name: pytest puts this folder on sys.path)."""
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (b the fp64 reference)."""
    a = a.detach().double()
    b = b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check(outs, refs, tol: float, names=None):
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    refs = refs if isinstance(refs, (tuple, list)) else (refs,)
    assert len(outs) == len(refs)
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert o.shape == r.shape, (names[i] if names else i, o.shape, r.shape)
        e = rel_err(o, r)
        assert e <= tol, f"{names[i] if names else i}: rel err {e:.3g} > {tol:g}"


def grads(outs, inputs, gouts):
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    return torch.autograd.grad(outs, inputs, gouts)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def as64(ts):
    return [leaf(t.detach().double()) if t is not None else None for t in ts]


def check_layer_paths(ref, tri, x, out_tol: float, grad_tol: float, allow_unused: bool = False):
    """A layer's Triton path equals its torch path: the output, and the gradients of the input
    and of every parameter (``ref`` and ``tri`` hold the same weights)."""
    xr, xt = leaf(x), leaf(x)
    yr, yt = ref(xr), tri(xt)
    check(yt, yr, out_tol, ["y"])
    dy = torch.randn_like(yr)
    gr = torch.autograd.grad(yr, [xr, *ref.parameters()], dy, allow_unused=allow_unused)
    gt = torch.autograd.grad(yt, [xt, *tri.parameters()], dy, allow_unused=allow_unused)
    names = ["x", *[n for n, _ in ref.named_parameters()]]
    for a, b, n in zip(gt, gr, names):
        assert (a is None) == (b is None), n
        if b is not None:
            check(a, b, grad_tol, [n])
