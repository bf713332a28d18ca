"""Chunked linear attention / retention / GLA kernels vs the torch references in fp64.

fp32 inputs, tolerance 1e-4 relative (max |a - b| / max |b|) on the output, the final state and
every input gradient (q, k, v, log_g, initial_state); measured errors are ~1e-6. Fresh random
inputs each run, odd lengths (L = 19, 37: a partial last chunk), K / V not powers of two (12,
24; V = 24 also splits V over two programs, exercising the partial-sum path), strong decays
(log_g down to -5 per step). Per-key GLA runs the two-level kernels (chunks of 32 under the
interpreter, 64 forced in one test: 2-4 sub-blocks of 16). Under the interpreter the grids are
B*H <= 4 programs (times the chunks, for the chunk-parallel launches).
"""
from functools import partial

import pytest
import torch

from mad_bench.ops.gla import chunk_gla, chunk_simple_gla
from mad_bench.ops.gla.reference import recurrent_gla
from mad_bench.ops.ssd import ssd
from mad_bench.ops.ssd.reference import ssd_chunked

from _kernel_test_utils import as64, check, leaf, rel_err, check_layer_paths

TOL = 1e-4
chunk_gla_ref = partial(chunk_gla, impl="torch")
chunk_simple_gla_ref = partial(chunk_simple_gla, impl="torch")


def _inputs(device, gate, B, H, L, K, V, h0, decay_max=5.0):
    q = torch.randn(B, H, L, K, device=device)
    k = torch.randn(B, H, L, K, device=device)
    v = torch.randn(B, H, L, V, device=device)
    if gate == "none":
        g = None
    elif gate == "scalar":
        g = -decay_max * torch.rand(B, H, L, device=device)
    else:
        g = -decay_max * torch.rand(B, H, L, K, device=device)
    s0 = torch.randn(B, H, K, V, device=device) if h0 else None
    return [leaf(t) if t is not None else None for t in (q, k, v, g, s0)]


def _op(gate):
    return (chunk_gla, chunk_gla_ref) if gate == "key" else (chunk_simple_gla, chunk_simple_gla_ref)


def _compare(gate, ins, scale, final, block_size=None, tol=TOL):
    q, k, v, g, s0 = ins
    fn, ref = _op(gate)
    out = fn(q, k, v, g, scale, s0, final, impl="triton", block_size=block_size)
    ins64 = as64(ins)
    out64 = ref(*ins64[:4], scale, ins64[4], final)
    outs = out if final else (out,)
    outs64 = out64 if final else (out64,)
    check(outs, outs64, tol, ["o", "final_state"])
    gouts = [torch.randn_like(o) for o in outs]
    live = [i for i, t in enumerate(ins) if t is not None]
    gr = torch.autograd.grad(outs, [ins[i] for i in live], gouts)
    gr64 = torch.autograd.grad(outs64, [ins64[i] for i in live], [t.double() for t in gouts])
    names = ["dq", "dk", "dv", "dlog_g", "dinitial_state"]
    check(gr, gr64, tol, [names[i] for i in live])


@pytest.mark.parametrize("gate", ["none", "scalar", "key"])
@pytest.mark.parametrize("B,H,L,K,V", [(1, 2, 19, 16, 16), (2, 1, 37, 12, 24)])
def test_with_states(device, gate, B, H, L, K, V):
    ins = _inputs(device, gate, B, H, L, K, V, h0=True)
    _compare(gate, ins, scale=K**-0.5, final=True)


@pytest.mark.parametrize("gate", ["none", "scalar", "key"])
def test_no_states(device, gate):
    ins = _inputs(device, gate, 1, 2, 37, 24, 16, h0=False)
    _compare(gate, ins, scale=None, final=False)


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_final_state_only_and_weak_decay_long_chunk(device, gate):
    """Only the final state feeds the loss (do = 0 path), chunk 32 over L = 37, gentle decay."""
    q, k, v, g, s0 = _inputs(device, gate, 1, 1, 37, 16, 16, h0=True, decay_max=0.1)
    fn, ref = _op(gate)
    _, sL = fn(q, k, v, g, 0.5, s0, True, impl="triton", block_size=32)
    ins64 = as64([q, k, v, g, s0])
    _, sL64 = ref(*ins64[:4], 0.5, ins64[4], True)
    check(sL, sL64, TOL)
    w = torch.randn_like(sL)
    gr = torch.autograd.grad((sL * w).sum(), [q, k, v, g, s0], allow_unused=True)
    gr64 = torch.autograd.grad((sL64 * w.double()).sum(), ins64, allow_unused=True)
    for a, b, name in zip(gr, gr64, ["dq", "dk", "dv", "dlog_g", "dh0"]):
        if b is None or b.abs().max() == 0:  # q gets no gradient from the state
            assert a is None or a.abs().max() == 0, name
        else:
            assert rel_err(a, b) <= TOL, name


def test_gla_four_sub_blocks_and_split_state_passes(device):
    """Per-key GLA with chunks of 64 (four 16-row sub-blocks: off-diagonal blocks on tl.dot)
    over L = 70 (a partial second chunk), K = 40 (the state passes split K over two programs
    under the interpreter), V = 20 (a partial value block)."""
    ins = _inputs(device, "key", 1, 1, 70, 40, 20, h0=True, decay_max=2.0)
    _compare("key", ins, scale=0.3, final=True, block_size=64)


def test_matches_naive_recurrence_extreme_decay(device):
    """Per-key decays of -30 per step (e^-30 per step): no overflow, matches the plain loop."""
    q, k, v, g, s0 = _inputs(device, "key", 1, 1, 19, 16, 16, h0=True, decay_max=30.0)
    o, sL = chunk_gla(q, k, v, g, 0.25, s0, True, impl="triton")
    o64, sL64 = recurrent_gla(*as64([q, k, v, g]), 0.25, as64([s0])[0])
    assert torch.isfinite(o).all() and torch.isfinite(sL).all()
    check((o, sL), (o64, sL64), TOL, ["o", "final_state"])


def test_strided_views_and_expanded_gate(device):
    """[B, L, H, d] -> [B, H, L, d] transposes and a stride-0 (RetNet-style) gate, no grad."""
    B, L, H, K = 2, 19, 2, 16
    x = leaf(torch.randn(B, L, H, 3 * K, device=device))
    q, k, v = (t.transpose(1, 2) for t in x.split(K, dim=-1))
    lg = torch.tensor([-0.05, -1.5], device=device)[None, :, None].expand(B, H, L)
    o = chunk_simple_gla(q, k, v, lg, 0.3, impl="triton")
    x64 = as64([x])[0]
    q64, k64, v64 = (t.transpose(1, 2) for t in x64.split(K, dim=-1))
    o64 = chunk_simple_gla_ref(q64, k64, v64, lg.double(), 0.3)
    check(o, o64, TOL)
    go = torch.randn_like(o)
    check(torch.autograd.grad(o, x, go), torch.autograd.grad(o64, x64, go.double()), TOL, ["dx"])


def test_fp16_inputs(device):
    """16-bit in, 16-bit out, fp32 inside (the interpreter has no bf16: fp16 stands in)."""
    q, k, v, g, s0 = _inputs(device, "scalar", 1, 2, 19, 16, 16, h0=False, decay_max=1.0)
    q16, k16, v16 = (leaf(t.half()) for t in (q, k, v))
    o = chunk_simple_gla(q16, k16, v16, g, None, impl="triton")
    assert o.dtype == torch.float16
    o64 = chunk_simple_gla_ref(*as64([q16, k16, v16, g]), None)
    check(o, o64, 2e-3)
    go = torch.randn_like(o)
    gr = torch.autograd.grad(o, (q16, k16, v16), go)
    assert all(t.dtype == torch.float16 for t in gr)


def test_ssd_matches_mamba2_reference(device):
    b, l, h, p, g, n = 1, 19, 2, 12, 1, 16
    x = leaf(torch.randn(b, l, h, p, device=device))
    dt = leaf(torch.rand(b, l, h, device=device) * 0.5 + 0.01)
    A = leaf(-torch.rand(h, device=device) * 4 - 0.5)
    Bm = leaf(torch.randn(b, l, g, n, device=device))
    Cm = leaf(torch.randn(b, l, g, n, device=device))
    s0 = leaf(torch.randn(b, h, p, n, device=device))
    y, hL = ssd(x, dt, A, Bm, Cm, s0, output_final_state=True, impl="triton")
    ins64 = as64([x, dt, A, Bm, Cm, s0])
    y64, hL64 = ssd_chunked(*ins64[:5], chunk_size=8, initial_state=ins64[5])
    check((y, hL), (y64, hL64), TOL, ["y", "h_last"])
    gy, gh = torch.randn_like(y), torch.randn_like(hL)
    ins = [x, dt, A, Bm, Cm, s0]
    check(torch.autograd.grad((y, hL), ins, (gy, gh)),
          torch.autograd.grad((y64, hL64), ins64, (gy.double(), gh.double())), TOL,
          ["dx", "ddt", "dA", "dB", "dC", "dh0"])


def test_torch_impl_and_errors():
    q, k, v = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    assert torch.equal(chunk_simple_gla(q, k, v, impl="torch"), chunk_simple_gla_ref(q, k, v))
    with pytest.raises(ValueError):
        chunk_gla(q, k, v, torch.zeros(1, 1, 5), impl="torch")  # per-key gate needs [B,H,L,K]
    with pytest.raises(ValueError):
        chunk_gla(q, k, v, None, impl="torch")


# ----------------------------------------------------------------------------- layers
_LAYERS = [
    ("linear-attention", dict(n_heads=2)),
    ("linear-attention", dict(n_heads=2, feature_map="identity", normalize=False)),
    ("retnet", dict(n_heads=2)),
    ("gated-linear-attention", dict(n_heads=2)),
    ("mamba2", dict(headdim=32, d_state=16)),
    ("mamba2", dict(headdim=16, d_state=12, n_groups=2)),
]


@pytest.mark.parametrize("name,kw", _LAYERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(_LAYERS)])
def test_layer_triton_path_equals_torch_path(device, name, kw):
    from mad_bench.primitives import REGISTRY

    entry = REGISTRY[name]
    assert entry.module.has_triton
    d_model, L = 32, 19
    m_torch = entry.module(entry.config(type=name, impl="torch", **kw), d_model, 64).to(device)
    m_tri = entry.module(entry.config(type=name, impl="triton", **kw), d_model, 64).to(device)
    m_tri.load_state_dict(m_torch.state_dict())
    x = torch.randn(1, L, d_model, device=device)
    check_layer_paths(m_torch, m_tri, x, TOL, 2 * TOL, allow_unused=True)


# ----------------------------------------------------------------------------- dot operands
def _gla_fwd_bwd(ins, gouts=None):
    """Two-level chunk_gla forward (chunks of 32 under the interpreter) and every gradient."""
    q, k, v, g, s0 = ins
    outs = chunk_gla(q, k, v, g, 0.3, s0, True, impl="triton")
    gouts = gouts or [torch.randn_like(o) for o in outs]
    return outs, torch.autograd.grad(outs, ins, gouts), gouts


def test_gla_dot_operands_input_fp16_matches_oracle(device, monkeypatch):
    """``DOT_OPERANDS = "input"`` on fp16 inputs (the interpreter's stand-in for bf16, whose dots
    it computes on the raw bits): fp16 dot operands, yet the output, final state and every gradient (gate included) match the
    fp64 loop within fp16 rounding, over L = 37 (a partial second chunk, both sub-blocks).
    The backward follows the mode its forward ran in, even after the switch is changed."""
    from mad_bench.ops.gla import two_level
    from mad_bench.ops.gla.naive import naive_gla

    q, k, v, g, s0 = _inputs(device, "key", 1, 2, 37, 16, 16, h0=True, decay_max=2.0)
    ins = [leaf(q.half()), leaf(k.half()), leaf(v.half()), g, s0]
    monkeypatch.setattr(two_level, "DOT_OPERANDS", "input")
    outs = chunk_gla(*ins[:4], 0.3, ins[4], True, impl="triton")
    monkeypatch.setattr(two_level, "DOT_OPERANDS", "fp32")
    gouts = [torch.randn_like(o) for o in outs]
    gr = torch.autograd.grad(outs, ins, gouts)
    ins64 = as64(ins)
    outs64 = naive_gla(*ins64[:4], 0.3, ins64[4], True)
    gr64 = torch.autograd.grad(outs64, ins64, [t.double() for t in gouts])
    assert outs[0].dtype == torch.float16 and all(t.dtype == u.dtype for t, u in zip(gr, ins))
    check(outs, outs64, 2e-3, ["o", "final_state"])  # measured <= 6e-4
    check(gr, gr64, 2e-3, ["dq", "dk", "dv", "dlog_g", "dinitial_state"])
    # the same inputs with fp32 operands (the switch is "fp32" now) round differently
    outs32, gr32, _ = _gla_fwd_bwd([leaf(t) for t in ins], gouts)
    assert not torch.equal(outs[0], outs32[0]) and not torch.equal(gr[0], gr32[0])


def test_gla_dot_operands_ignored_for_fp32_inputs(device, monkeypatch):
    """fp32 inputs: "input" is bit-identical to the default (the casts are no-ops)."""
    from mad_bench.ops.gla import two_level

    ins = _inputs(device, "key", 1, 1, 37, 16, 16, h0=True, decay_max=2.0)
    outs, gr, gouts = _gla_fwd_bwd(ins)
    monkeypatch.setattr(two_level, "DOT_OPERANDS", "input")
    outs_in, gr_in, _ = _gla_fwd_bwd([leaf(t) for t in ins], gouts)
    for a, b in zip((*outs, *gr), (*outs_in, *gr_in)):
        assert torch.equal(a, b)


def test_gla_dot_operands_rejects_unknown_mode(device, monkeypatch):
    from mad_bench.ops.gla import two_level

    monkeypatch.setattr(two_level, "DOT_OPERANDS", "bf16")
    q, k, v, g, _ = _inputs(device, "key", 1, 1, 19, 16, 16, h0=False)
    with pytest.raises(ValueError, match="DOT_OPERANDS.*'bf16'"):
        chunk_gla(q, k, v, g, impl="triton")
