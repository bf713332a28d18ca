"""Every Triton kernel's custom ops, as the layers call them, pass ``torch.library.opcheck``'s
schema and fake-tensor tests: the fake (what torch.compile traces) gives each output the real
op's shape, dtype AND strides. Compiled code indexes an op's outputs by the fake's strides, so a
mismatch is a silently wrong gradient under inductor, not an error."""
import importlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from test_vmap_rules import _LAYERS


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
    module, layer, config, kw, _ = _LAYERS[name]
    mod = importlib.import_module(f"mad_bench.primitives.sequence.{module}")
    Layer, Cfg = getattr(mod, layer), getattr(mod, config)
    torch.manual_seed(0)
    m = Layer(Cfg(impl="triton", **kw), 16, 32)
    x = torch.randn(2, 9, 16, requires_grad=True)
    rec = _Recorder()
    with rec:
        m(x).square().sum().backward()
    assert rec.calls, f"{name}: no mad_bench op was called"
    for func, (args, kwargs) in rec.calls.items():
        torch.library.opcheck(func, args, kwargs, test_utils=("test_schema", "test_faketensor"))
