"""Every registered primitive in fp64 (``.double()``), driven by the registry.

* Sequence mixers: the parallel form runs in fp64, ``init_state`` (no device / dtype given)
  makes fp64 states from the parameters, and stepping token by token reproduces the parallel
  output to fp64 rounding (1e-12 relative; an fp32 state or cast shows at ~1e-7).
* Every primitive's parallel form really computes in fp64: its central finite difference along a
  random direction matches the autograd derivative to 1e-6 (step 1e-6: truncation <= 1e-8,
  fp64 rounding ~1e-10; one fp32 cast on the way makes it ~1e-2).

Tiny widths and lengths; every primitive runs on the CPU with the torch path (``impl: torch``).
"""
import pytest
import torch

from mad_bench.configs.registry import list_primitives
from mad_bench.primitives import REGISTRY

D, L, B = 8, 5, 1


def _build(name):
    entry = REGISTRY[name]
    fields = entry.config.model_fields
    kw = {"impl": "torch"} if "impl" in fields else {}
    cfg = entry.config(type=name, **kw).at_width(D)
    cfg.check(D)
    return entry.module(cfg, D, L).double().eval()


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (tuple, list)):
        return [t for v in state for t in _tensors(v)]
    return []


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", list_primitives()["sequence"])
def test_sequence_mixer_steps_equal_parallel_in_fp64(name):
    torch.manual_seed(0)
    layer = _build(name)
    x = torch.randn(B, L, D, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
        state = layer.init_state(B)
        kinds = {t.dtype for t in _tensors(state) if t.is_floating_point()}
        assert kinds <= {torch.float64}, f"{name}: init_state made {kinds} states for an fp64 layer"
        steps = []
        for t in range(L):
            y_t, state = layer.step(x[:, t], state)
            steps.append(y_t)
    assert y.dtype == torch.float64 and y.shape == (B, L, D)
    ys = torch.stack(steps, dim=1)
    assert ys.dtype == torch.float64
    assert _rel(ys, y) < 1e-12, f"{name}: step vs parallel rel err {_rel(ys, y):.3g}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_parallel_form_computes_in_fp64(name):
    torch.manual_seed(1)
    layer = _build(name)
    x = torch.randn(B, L, D, dtype=torch.float64, requires_grad=True)
    d, u = torch.randn_like(x), torch.randn(B, L, D, dtype=torch.float64)
    (g,) = torch.autograd.grad((layer(x) * u).sum(), x)
    assert g.dtype == torch.float64
    h = 1e-6
    with torch.no_grad():
        fd = ((layer(x + h * d) - layer(x - h * d)) * u).sum() / (2 * h)
    exact = (g * d).sum()
    err = abs((fd - exact).item()) / max(abs(exact.item()), g.abs().sum().item() * 1e-3)
    assert err < 1e-6, f"{name}: finite difference vs autograd {err:.3g} (an fp32 step?)"


def test_whole_model_in_fp64_steps():
    """``model.double()`` then ``init_state`` / ``step`` (the failure of issue 17: fp32 states
    met fp64 weights in lstm, gru, retnet and gated-deltanet)."""
    from mad_bench import build_model, load_spec

    torch.manual_seed(2)
    layers = ["lstm", "gru", "retnet", "gated-deltanet"]
    spec = load_spec({"name": "f64", "d_model": D, "layers": layers})
    model = build_model(spec, vocab_size=11, max_len=L).double().eval()
    tokens = torch.randint(0, 11, (B, L))
    with torch.no_grad():
        parallel = model(tokens)
        state = model.init_state(B)
        steps = []
        for t in range(L):
            out, state = model.step(tokens[:, t], state)
            steps.append(out)
    assert parallel.dtype == torch.float64
    assert _rel(torch.stack(steps, dim=1), parallel) < 1e-12
