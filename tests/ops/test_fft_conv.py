"""The FFT long convolution (Hyena, H3, BaseConv) against its direct-sum oracle: output and
gradients in fp64, the filter broadcast as the layers use it, the batching rule (members as one
leading dim, one call), and clear errors for shapes that do not broadcast."""
import pytest
import torch
from torch.func import vmap

from mad_bench.ops import fft_conv
from mad_bench.ops.fft_conv import fft_causal_conv
from mad_bench.ops.fft_conv.naive import naive_fft_causal_conv

from _kernel_test_utils import check, leaf

# (u shape, k shape): Hyena's [B, C, L] with a [C, L] filter, the outer-product form's
# [B, G, N, N, L] with [1, G, 1, 1, L], a filter per batch row, odd lengths
SHAPES = [((2, 3, 7), (3, 7)), ((2, 2, 3, 3, 5), (1, 2, 1, 1, 5)), ((2, 4, 1), (2, 4, 1)), ((1, 2, 16), (2, 16))]


@pytest.mark.parametrize("us,ks", SHAPES)
def test_fft_conv_and_its_gradients_equal_the_direct_sum(us, ks):
    torch.manual_seed(0)
    u, k = leaf(torch.randn(us, dtype=torch.float64)), leaf(torch.randn(ks, dtype=torch.float64))
    y = fft_causal_conv(u, k)
    u2, k2 = leaf(u.detach()), leaf(k.detach())
    ref = naive_fft_causal_conv(u2, k2)
    g = torch.randn_like(ref)
    check([y, *torch.autograd.grad(y, (u, k), g)], [ref, *torch.autograd.grad(ref, (u2, k2), g)], 1e-10,
          ["y", "du", "dk"])


def test_bf16_input_computes_in_fp32_and_keeps_its_dtype():
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 9).bfloat16(), torch.randn(3, 9)
    y = fft_causal_conv(u, k)
    assert y.dtype == torch.bfloat16
    check(y.float(), naive_fft_causal_conv(u.double(), k.double()).float(), 1e-2, ["y"])


def test_per_member_filters_under_vmap_are_one_call_and_equal_the_loop(monkeypatch):
    torch.manual_seed(0)
    G, B, C, L = 3, 2, 4, 6
    u = leaf(torch.randn(G, B, C, L, dtype=torch.float64))
    k = leaf(torch.randn(G, C, L, dtype=torch.float64))
    calls = []
    real = fft_conv.fft_conv_fwd
    monkeypatch.setattr(fft_conv, "fft_conv_fwd", lambda *a: calls.append(a[0].shape) or real(*a))
    y = vmap(fft_causal_conv)(u, k)
    assert calls == [torch.Size([G, B, C, L])]  # the members as a leading dim: one call
    g = torch.randn_like(y)
    gv = torch.autograd.grad(y, (u, k), g)
    u2, k2 = leaf(u.detach()), leaf(k.detach())
    yl = torch.stack([naive_fft_causal_conv(u2[i], k2[i]) for i in range(G)])
    check([y, *gv], [yl, *torch.autograd.grad(yl, (u2, k2), g)], 1e-10, ["y", "du", "dk"])
    shared = vmap(fft_causal_conv, in_dims=(0, None))(u.detach(), k.detach()[0])  # one filter for all
    check(shared, torch.stack([naive_fft_causal_conv(u2[i], k2[0]) for i in range(G)]), 1e-10, ["y"])


@pytest.mark.parametrize("us,ks,msg", [((2, 3, 7), (3, 6), "same length"), ((3, 7), (2, 3, 7), "must broadcast"),
                                        ((2, 1, 7), (3, 7), "not u against k")])
def test_shapes_that_do_not_broadcast_name_both(us, ks, msg):
    with pytest.raises(ValueError, match=msg):
        fft_causal_conv(torch.randn(us), torch.randn(ks))
