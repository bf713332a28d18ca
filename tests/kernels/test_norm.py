"""Fused RMSNorm / LayerNorm (+ residual) vs the fp64 torch reference. fp32, tol 1e-5 rel."""
import pytest
import torch

from mad_bench.kernels.norm import layer_norm, layer_norm_ref, rms_norm, rms_norm_ref

from _kernel_test_utils import as64, check, grads, leaf

TOL = 1e-5


@pytest.mark.parametrize("kind", ["rms", "ln"])
@pytest.mark.parametrize("with_res", [False, True])
@pytest.mark.parametrize("shape", [(2, 19, 24), (37, 40), (3, 5, 128)])
def test_norm(device, kind, with_res, shape):
    D = shape[-1]
    x = leaf(torch.randn(shape, device=device))
    w = leaf(torch.rand(D, device=device) + 0.5)
    b = leaf(torch.randn(D, device=device)) if kind == "ln" else None
    r = leaf(torch.randn(shape, device=device)) if with_res else None
    if kind == "rms":
        f = lambda x, w, b, r, **kw: rms_norm(x, w, 1e-6, residual=r, **kw)  # noqa: E731
        ref = lambda x, w, b, r: rms_norm_ref(x, w, 1e-6, residual=r)  # noqa: E731
    else:
        f = lambda x, w, b, r, **kw: layer_norm(x, w, b, 1e-5, residual=r, **kw)  # noqa: E731
        ref = lambda x, w, b, r: layer_norm_ref(x, w, b, 1e-5, residual=r)  # noqa: E731
    out = f(x, w, b, r, impl="triton")
    x64, w64, b64, r64 = as64([x, w, b, r])
    out64 = ref(x64, w64, b64, r64)
    check(out, out64, TOL, ["y", "h"])
    outs = out if isinstance(out, tuple) else (out,)
    gouts = [torch.randn_like(o) for o in outs]
    ins = [t for t in (x, w, b, r) if t is not None]
    ins64 = [t for t in (x64, w64, b64, r64) if t is not None]
    g = grads(out, ins, gouts)
    g64 = grads(out64, ins64, [gg.double() for gg in gouts])
    check(g, g64, TOL, ["dx", "dw", "db", "dres"][: len(g)] if kind == "ln" else ["dx", "dw", "dres"])


def test_norm_no_weight_and_unused_residual_grad(device):
    x = leaf(torch.randn(9, 40, device=device))
    r = leaf(torch.randn(9, 40, device=device))
    y, h = rms_norm(x, None, residual=r, impl="triton")
    y64, _ = rms_norm_ref(*as64([x]), None, residual=as64([r])[0])
    check(y, y64, TOL)
    gy = torch.randn_like(y)
    # only y used downstream: the residual-output gradient is None
    gx, gr = torch.autograd.grad(y, (x, r), gy)
    x64, r64 = as64([x, r])
    y64, _ = rms_norm_ref(x64, None, residual=r64)
    gx64, gr64 = torch.autograd.grad(y64, (x64, r64), gy.double())
    check((gx, gr), (gx64, gr64), TOL)


def test_torch_impl_matches_reference():
    x = torch.randn(4, 24)
    w = torch.randn(24)
    assert torch.equal(rms_norm(x, w, impl="torch"), rms_norm_ref(x, w))
