"""Every Triton kernel's custom ops, as the layers call them, pass ``torch.library.opcheck``'s
schema and fake-tensor tests: the fake (what torch.compile traces) gives each output the real
op's shape, dtype AND strides. Compiled code indexes an op's outputs by the fake's strides, so a
mismatch is a silently wrong gradient under inductor, not an error."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from test_vmap_rules import _LAYERS, layer_of


class _Recorder(TorchDispatchMode):
    """The first call of each ``mad_bench::`` op, with copies of its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "mad_bench" and func not in self.calls:
            copy = torch.utils._pytree.tree_map(
                lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, (args, kwargs))
            self.calls[func] = copy
        return func(*args, **kwargs)


@pytest.mark.parametrize("name", list(_LAYERS))
def test_the_layers_custom_ops_pass_opcheck(name):
    torch.manual_seed(0)
    m = layer_of(name, "triton")
    x = torch.randn(2, 9, 16, requires_grad=True)
    rec = _Recorder()
    with rec:
        m(x).square().sum().backward()
    assert rec.calls, f"{name}: no mad_bench op was called"
    for func, (args, kwargs) in rec.calls.items():
        torch.library.opcheck(func, args, kwargs, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("window", [None, 5])
def test_tiled_attention_ops_pass_opcheck(window):
    """The tiled attention path (sliding-window attention past L 256 on CUDA), forced at a
    small length, with q, k, v as views of one qkv projection as the layer passes them."""
    from mad_bench.ops.attention.triton import attention_triton

    torch.manual_seed(0)
    qkv = torch.randn(2, 21, 3, 2, 8, requires_grad=True)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    rec = _Recorder()
    with rec:
        attention_triton(q, k, v, window, short=False).square().sum().backward()
    assert len(rec.calls) == 2  # forward and backward op
    for func, (args, kwargs) in rec.calls.items():
        torch.library.opcheck(func, args, kwargs, test_utils=("test_schema", "test_faketensor"))


def test_tile_scan_ops_pass_opcheck():
    """The selective scan's tile kernels (d_state > 4, e.g. the Zoology Mamba), as Mamba calls
    them: time-major tensors passed transposed."""
    from mad_bench.ops.selective_scan import selective_scan

    torch.manual_seed(0)
    b, d, n, L = 2, 8, 8, 11
    u, delta, z = (torch.randn(b, L, d).transpose(1, 2).requires_grad_() for _ in range(3))
    A = (-torch.rand(d, n)).requires_grad_()
    B, C = (torch.randn(b, L, n).transpose(1, 2).requires_grad_() for _ in range(2))
    D, bias = torch.randn(d, requires_grad=True), torch.randn(d, requires_grad=True)
    rec = _Recorder()
    with rec:
        selective_scan(u, delta, A, B, C, D, z, bias, True, impl="triton").square().sum().backward()
    assert len(rec.calls) == 2
    for func, (args, kwargs) in rec.calls.items():
        torch.library.opcheck(func, args, kwargs, test_utils=("test_schema", "test_faketensor"))
