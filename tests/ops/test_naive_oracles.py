"""Every op family against its step-by-step oracle (``mad_bench.ops.<family>.naive``).

* torch path (``impl="torch"``, the chunked reference) vs the naive loop, both in fp64: outputs,
  final states and the gradients of every input agree to ~1e-10 relative; small chunks and
  lengths that are not a multiple of them (several chunks and a partial last one).
* Triton path (``impl="triton"``: the kernel, under the interpreter on CPU) in fp32 vs the naive
  loop in fp64 on the same values: ~1e-4 relative, outputs and input gradients. Tiny shapes
  (B * H <= 2 programs per launch). Written against the public ops, so a rewritten kernel
  behind the same op is tested the same way.

Each case builds fresh random inputs; ``case(dtype)`` returns ``(inputs, op, naive)`` where
``op(*inputs, impl=...)`` and ``naive(*inputs)`` return a tensor or a tuple of tensors.
"""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.causal_conv import causal_conv1d
from mad_bench.ops.causal_conv.naive import naive_causal_conv1d
from mad_bench.ops.delta_rule import chunk_delta_rule
from mad_bench.ops.delta_rule.naive import naive_delta_rule
from mad_bench.ops.gated_delta_rule import gated_delta_rule
from mad_bench.ops.gated_delta_rule.naive import naive_gated_delta_rule
from mad_bench.ops.gla import chunk_gla, chunk_simple_gla
from mad_bench.ops.gla.naive import naive_gla, naive_simple_gla
from mad_bench.ops.mlstm import mlstm
from mad_bench.ops.mlstm.naive import naive_mlstm
from mad_bench.ops.rwkv6 import wkv6
from mad_bench.ops.rwkv6.naive import naive_wkv6
from mad_bench.ops.selective_scan import selective_scan
from mad_bench.ops.selective_scan.naive import naive_selective_scan
from mad_bench.ops.slstm import slstm_scan
from mad_bench.ops.slstm.naive import naive_slstm_scan
from mad_bench.ops.ssd import ssd
from mad_bench.ops.ssd.naive import naive_ssd

from _kernel_test_utils import check, leaf

TOL64 = 1e-10
TOL_KERNEL = 1e-4


def _r(*shape, dtype):
    return torch.randn(*shape, dtype=dtype)


def _unit(*shape, dtype):
    return F.normalize(_r(*shape, dtype=dtype), dim=-1)


# -- the cases: (inputs, op, naive); ``chunk`` is the torch path's chunk ---------------------

def causal_conv(dtype, L=11, chunk=None):
    x, w, b = _r(2, L, 6, dtype=dtype), _r(6, 1, 4, dtype=dtype), _r(6, dtype=dtype)
    return [x, w, b], partial(causal_conv1d, activation="silu"), \
        partial(naive_causal_conv1d, activation="silu")


def delta_rule(dtype, L=11, chunk=4, B=1, H=2):
    q, k = _unit(B, H, L, 8, dtype=dtype), _unit(B, H, L, 8, dtype=dtype)
    v, beta = _r(B, H, L, 8, dtype=dtype), torch.rand(B, H, L, dtype=dtype)
    s0 = _r(B, H, 8, 8, dtype=dtype)
    op = partial(chunk_delta_rule, scale=0.7, output_final_state=True, chunk_size=chunk)
    nv = partial(naive_delta_rule, scale=0.7, output_final_state=True)
    return [q, k, v, beta], _state_kw(op, s0), _state_kw(nv, s0)


def gated_delta_rule_case(dtype, L=11, chunk=4, B=1, H=2):
    q, k = _unit(B, H, L, 8, dtype=dtype), _unit(B, H, L, 8, dtype=dtype)
    v, beta = _r(B, H, L, 8, dtype=dtype), torch.rand(B, H, L, dtype=dtype)
    log_g = -torch.rand(B, H, L, dtype=dtype)
    s0 = _r(B, H, 8, 8, dtype=dtype)
    op = partial(gated_delta_rule, scale=0.7, output_final_state=True, chunk_size=chunk)
    nv = partial(naive_gated_delta_rule, scale=0.7, output_final_state=True)
    return [q, k, v, beta, log_g], _state_kw(op, s0), _state_kw(nv, s0)


def gla(dtype, L=11, chunk=8, B=1, H=2):
    q, k, v = _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype)
    log_g = F.logsigmoid(_r(B, H, L, 8, dtype=dtype) + 2)
    s0 = _r(B, H, 8, 8, dtype=dtype)
    op = partial(chunk_gla, scale=0.5, output_final_state=True, chunk_size=chunk, sub_chunk_size=4)
    nv = partial(naive_gla, scale=0.5, output_final_state=True)
    return [q, k, v, log_g], _state_kw(op, s0), _state_kw(nv, s0)


def simple_gla(dtype, L=11, chunk=4, B=1, H=2, decay=True):
    q, k, v = _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype)
    s0 = _r(B, H, 8, 8, dtype=dtype)
    ins = [q, k, v]
    if decay:
        ins.append(F.logsigmoid(_r(B, H, L, dtype=dtype) + 2))
    op = partial(chunk_simple_gla, scale=0.5, output_final_state=True, chunk_size=chunk)
    nv = partial(naive_simple_gla, scale=0.5, output_final_state=True)
    return ins, _state_kw(op, s0), _state_kw(nv, s0)


def mlstm_case(dtype, L=11, chunk=4, B=1, H=2):
    q, v = _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype)
    k = _r(B, H, L, 8, dtype=dtype) * 8 ** -0.5
    ig, lf = _r(B, H, L, dtype=dtype) * 3, F.logsigmoid(_r(B, H, L, dtype=dtype) * 3)
    st = (_r(B, H, 8, 8, dtype=dtype), _r(B, H, 8, dtype=dtype), _r(B, H, dtype=dtype))
    op = partial(mlstm, output_final_state=True, chunk_size=chunk)
    nv = partial(naive_mlstm, output_final_state=True)
    return [q, k, v, ig, lf], _state_kw(op, st), _state_kw(nv, st)


def wkv6_case(dtype, L=11, chunk=4, B=1, H=2):
    r, k, v = _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype), _r(B, H, L, 8, dtype=dtype)
    logw = -torch.exp(_r(B, H, L, 8, dtype=dtype) - 1)
    u = _r(H, 8, dtype=dtype)
    return [r, k, v, logw, u], partial(wkv6, chunk_size=chunk), naive_wkv6


def selective_scan_case(dtype, L=11, chunk=4, grouped=False, last_state=False):
    b, d, n = 1, 6, 4
    u, delta = _r(b, d, L, dtype=dtype), _r(b, d, L, dtype=dtype)
    A = -torch.exp(_r(d, n, dtype=dtype))
    Bm, Cm = (_r(b, 2, n, L, dtype=dtype), _r(b, 2, n, L, dtype=dtype)) if grouped else \
        (_r(b, n, L, dtype=dtype), _r(b, n, L, dtype=dtype))
    D, z, bias = _r(d, dtype=dtype), _r(b, d, L, dtype=dtype), _r(d, dtype=dtype)
    kw = dict(delta_softplus=True, return_last_state=last_state)
    if last_state:
        kw["initial_state"] = _r(b, d, n, dtype=dtype)
    return [u, delta, A, Bm, Cm, D, z, bias], partial(selective_scan, chunk_size=chunk, **kw), \
        partial(naive_selective_scan, **kw)


def slstm_case(dtype, L=11, chunk=None, B=1, H=2, dh=8):
    wx, R = _r(B, L, H, 4 * dh, dtype=dtype), _r(H, dh, 4 * dh, dtype=dtype) * dh ** -0.5
    return [wx, R], slstm_scan, naive_slstm_scan


def ssd_case(dtype, L=11, chunk=4, heads=4, groups=2):
    b, p, n = 1, 4, 4
    x, dt = _r(b, L, heads, p, dtype=dtype), F.softplus(_r(b, L, heads, dtype=dtype))
    A = -torch.exp(_r(heads, dtype=dtype))
    Bm, Cm = _r(b, L, groups, n, dtype=dtype), _r(b, L, groups, n, dtype=dtype)
    s0 = _r(b, heads, p, n, dtype=dtype)
    op = partial(ssd, output_final_state=True, chunk_size=chunk)
    return [x, dt, A, Bm, Cm], _state_kw(op, s0), \
        _state_kw(partial(naive_ssd, output_final_state=True), s0)


def _state_kw(fn, state):
    """``fn`` with ``initial_state`` bound to the leaf copies made in :func:`_run` (a state that
    is a tensor or a tuple of tensors is an input too: it gets a gradient)."""
    return partial(_with_state, fn, state)


def _with_state(fn, state, *ins, state_leaves=None, **kw):
    return fn(*ins, initial_state=state_leaves, **kw)


def _leaves(ins, st, dtype, device="cpu"):
    ins = [leaf(t.to(device, dtype)) for t in ins]
    if st is None:
        return ins, None
    sl = (tuple(leaf(t.to(device, dtype)) for t in st) if isinstance(st, tuple)
          else leaf(st.to(device, dtype)))
    return ins, sl


def _run(fn, ins, st, **kw):
    if st is None:
        out = fn(*ins, **kw)
    else:
        out = fn(*ins, state_leaves=st, **kw)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    flat = []
    for o in outs:
        flat.extend(o if isinstance(o, (tuple, list)) else (o,))
    return flat


def _state_of(fn):
    """The initial state bound by :func:`_state_kw`, or None."""
    return fn.args[1] if isinstance(fn, partial) and fn.func is _with_state else None


def _as_list(state):
    return [] if state is None else list(state) if isinstance(state, tuple) else [state]


def _grad_targets(outs):
    """Outputs that carry a gradient (mLSTM's stabiliser ``m`` does not)."""
    return [o for o in outs if o.requires_grad]


def _compare(case, op_dtype, impl, tol, device="cpu", grads=True, **case_kw):
    torch.manual_seed(0)
    ins, op, nv = case(torch.float64, **case_kw)
    st = _state_of(op)
    op_ins, op_st = _leaves(ins, st, op_dtype, device)
    nv_ins, nv_st = _leaves(ins, st, torch.float64)
    got = _run(op, op_ins, op_st, impl=impl)
    want = _run(nv, nv_ins, nv_st)
    assert [o.dtype for o in want][0] == torch.float64
    if op_dtype == torch.float64:
        assert all(o.dtype == torch.float64 for o in got), [o.dtype for o in got]
    names = [f"out{i}" for i in range(len(want))]
    check([o.cpu() for o in got], want, tol, names)
    if not grads:
        return
    got_t, want_t = _grad_targets(got), _grad_targets(want)
    assert len(got_t) == len(want_t)
    gouts = [torch.randn_like(w) for w in want_t]
    got_t = [o.cpu() for o in got_t]
    leaves_op, leaves_nv = op_ins + _as_list(op_st), nv_ins + _as_list(nv_st)
    g_op = torch.autograd.grad(got_t, leaves_op, [g.to(o.dtype) for g, o in zip(gouts, got_t)],
                               allow_unused=True)
    g_nv = torch.autograd.grad(want_t, leaves_nv, gouts, allow_unused=True)
    for i, (a, b) in enumerate(zip(g_op, g_nv)):
        if b is None:  # an input the function does not depend on (mLSTM's m_0)
            assert a is None or not a.abs().max() > 0, f"d input {i}"
            continue
        assert a is not None, f"d input {i}: no gradient on the op's path"
        check(a.cpu(), b, tol, [f"d input {i}"])


FP64_CASES = {
    "causal_conv": (causal_conv, {}),
    "delta_rule": (delta_rule, {}),
    "gated_delta_rule": (gated_delta_rule_case, {}),
    "gla": (gla, {}),
    "gla-short": (gla, {"L": 3}),
    "simple_gla": (simple_gla, {}),
    "linear_attention": (simple_gla, {"decay": False}),
    "mlstm": (mlstm_case, {}),
    "rwkv6": (wkv6_case, {}),
    "selective_scan": (selective_scan_case, {}),
    "selective_scan-grouped-state": (selective_scan_case, {"grouped": True, "last_state": True}),
    "slstm": (slstm_case, {}),
    "ssd": (ssd_case, {}),
    "ssd-long-chunk": (ssd_case, {"chunk": 64}),
}


@pytest.mark.parametrize("name", list(FP64_CASES))
def test_torch_path_equals_naive_in_fp64(name):
    case, kw = FP64_CASES[name]
    _compare(case, torch.float64, "torch", TOL64, **kw)


SMALL = {"L": 7, "H": 1}  # one program per launch (or two, for V-blocks), seven steps
KERNEL_CASES = {
    "causal_conv": (causal_conv, {"L": 7}),
    "delta_rule": (delta_rule, SMALL),
    "gated_delta_rule": (gated_delta_rule_case, SMALL),
    "gla": (gla, SMALL),
    "simple_gla": (simple_gla, SMALL),
    "linear_attention": (simple_gla, {**SMALL, "decay": False}),
    "mlstm": (mlstm_case, {**SMALL, "chunk": 16}),
    "rwkv6": (wkv6_case, SMALL),
    "selective_scan": (selective_scan_case, {"L": 7}),
    "slstm": (slstm_case, SMALL),
    "ssd": (ssd_case, {"L": 7, "heads": 2, "groups": 1}),
}


@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_triton_kernel_equals_naive(device, name):
    case, kw = KERNEL_CASES[name]
    _compare(case, torch.float32, "triton", TOL_KERNEL, device, **kw)


def test_naive_keeps_fp64_and_rejects_bad_activation():
    """The oracles compute in fp64 for fp64 inputs (an fp32 detour would show at ~1e-8) and
    keep the op's argument checks."""
    torch.manual_seed(1)
    ins, _, nv = ssd_case(torch.float64)
    y64, _ = nv(*ins, state_leaves=None)
    y32, _ = nv(*[t.float() for t in ins], state_leaves=None)
    assert y64.dtype == torch.float64 and y32.dtype == torch.float32
    assert (y64 - y32.double()).abs().max() > 1e-12  # not the same computation in fp32
    with pytest.raises(ValueError, match="activation"):
        naive_causal_conv1d(ins[0][:, :, 0], torch.ones(4, 1, 2), activation="relu")
