"""Chunked mLSTM kernel vs the torch reference (``mlstm_chunked``) computed in fp64.

fp32 inputs, tolerance 1e-4 relative (max |a - b| / max |b|) on the output, the final state
(C, n, m) and every input gradient (q, k, v, input- and forget-gate pre-activations, C_0, n_0);
measured errors ~1e-6..1e-5. With the strongest gates the problem itself is ill-conditioned in
fp32 (see ``_compare``): there the bound is 30x the fp32 torch reference's own error (worst
kernel / fp32-torch ratio seen ~12 over 500 random cases). Fresh random inputs each run; odd
lengths (L = 19, 37: partial last chunk, several kernel chunks), head dims 12 and 16, V = 24 (two V-blocks under the
interpreter: the partial-sum path); strong gates (i~ uniform in [-20, 20], forget gates from
~e^-12 to ~1 - e^-12). The reference runs with another chunk length (8) than the kernel (32 or
64: ``chunk_size`` 64 capped at the sequence), so the stabilisers differ and only the
stabiliser-free quantities must agree. Under the
interpreter the grids are B*H <= 2 programs.
"""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.mlstm import mlstm, mlstm_chunked

from _kernel_test_utils import as64, check, leaf, rel_err, check_layer_paths

TOL = 1e-4
mlstm_ref = partial(mlstm, impl="torch")
NAMES = ["dq", "dk", "dv", "di", "df", "dC0", "dn0"]


def _inputs(device, B, H, L, K, V, with_state, gate_scale=20.0):
    q = torch.randn(B, H, L, K, device=device)
    k = torch.randn(B, H, L, K, device=device) * K**-0.5
    v = torch.randn(B, H, L, V, device=device)
    ig = (torch.rand(B, H, L, device=device) * 2 - 1) * gate_scale  # i~ in [-20, 20]
    fp = (torch.rand(B, H, L, device=device) * 2 - 1) * 12  # sigmoid(f~) in [6e-6, 1 - 6e-6]
    st = []
    if with_state:
        st = [torch.randn(B, H, K, V, device=device), torch.randn(B, H, K, device=device),
              torch.randn(B, H, device=device) * 3]
    return [leaf(t) for t in (q, k, v, ig, fp)], [leaf(t) for t in st]


def _call(fn, ins, st, final, **kw):
    q, k, v, ig, fp = ins
    state = tuple(st) if st else None
    return fn(q, k, v, ig, F.logsigmoid(fp), state, final, **kw)


def _outs_and_grads(fn, ins, st, final, gouts=None, **kw):
    out = _call(fn, ins, st, final, **kw)
    outs = [out[0], *out[1]] if final else [out]
    if gouts is None:
        gouts = [torch.randn_like(o) for o in outs[:3]]  # m carries no gradient
    leaves = ins + st[:2]
    gr = torch.autograd.grad(outs[:3], leaves, [g.to(o.dtype) for g, o in zip(gouts, outs)])
    return outs + list(gr), gouts


def _compare(device, B, H, L, K, V, with_state, final):
    """Kernel vs the fp64 reference, tolerance ``max(TOL, 30 * e32)`` with ``e32`` the fp32 torch
    reference's own worst error on the same inputs: with gates up to +-20 the normaliser
    ``|n . q|`` can nearly cancel, and then fp32 rounding alone moves ``h`` by ~1e-3 (fp64 with
    1e-7 relative input noise moves as far), by an amount that depends on the chunking; the
    kernel stays within ~1-2x of fp32 torch at its own chunk length."""
    ins, st = _inputs(device, B, H, L, K, V, with_state)
    got, gouts = _outs_and_grads(mlstm, ins, st, final, impl="triton")
    ref, _ = _outs_and_grads(mlstm_ref, as64(ins), as64(st), final, gouts, chunk_size=8)
    e32 = 0.0
    for chunk in (16, 32, 64):  # the kernel's chunk lengths (32 / 64 here; 16 as a margin)
        f32 = [leaf(t.cpu()) for t in ins], [leaf(t.cpu()) for t in st]
        r32, _ = _outs_and_grads(mlstm_ref, *f32, final, [g.cpu() for g in gouts], chunk_size=chunk)
        e32 = max([e32] + [rel_err(a, b.cpu()) for a, b in zip(r32, ref)])
    names = (["h", "C", "n", "m"] if final else ["h"]) + NAMES[: len(ins) + len(st[:2])]
    check(got, ref, max(TOL, 30 * e32), names)


@pytest.mark.parametrize("B,H,L,K,V", [(1, 2, 19, 16, 16), (2, 1, 37, 12, 24)])
@pytest.mark.parametrize("with_state,final", [(False, False), (True, True)])
def test_mlstm_vs_reference(device, B, H, L, K, V, with_state, final):
    _compare(device, B, H, L, K, V, with_state, final)


def _naive(q, k, v, ig, lf, state):
    """Step-by-step stabilised recurrence (the layer's ``step``), m detached."""
    C, n, m = state
    m = m.detach()
    hs = []
    for t in range(q.shape[2]):
        m_new = torch.maximum(lf[..., t] + m, ig[..., t]).detach()
        f_, i_ = (lf[..., t] + m - m_new).exp(), (ig[..., t] - m_new).exp()
        C = f_[..., None, None] * C + i_[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = f_[..., None] * n + i_[..., None] * k[..., t, :]
        den = torch.maximum((q[..., t, :] * n).sum(-1).abs(), (-m_new).exp())
        hs.append((q[..., t, :, None] * C).sum(-2) / den[..., None])
        m = m_new
    return torch.stack(hs, 2), (C, n, m)


def test_mlstm_vs_step_recurrence(device):
    """Against the plain loop (independent of the chunked reference), final state included:
    catches a lost gradient through the decay of the carried state across whole chunks."""
    ins, st = _inputs(device, 1, 2, 37, 16, 16, True, gate_scale=4.0)
    h, (C, n, m) = _call(mlstm, ins, st, True, impl="triton")
    ins64, st64 = as64(ins), as64(st)
    q, k, v, ig, fp = ins64
    h64, (C64, n64, m64) = _naive(q, k, v, ig, F.logsigmoid(fp), st64)
    check((h, C, n, m), (h64, C64, n64, m64), TOL, ["h", "C", "n", "m"])
    gouts = [torch.randn_like(t) for t in (h, C, n)]
    gr = torch.autograd.grad((h, C, n), ins + st[:2], gouts)
    gr64 = torch.autograd.grad((h64, C64, n64), ins64 + st64[:2], [g.double() for g in gouts])
    check(gr, gr64, TOL, NAMES)


def test_final_state_only_gradient(device):
    """Only the final state feeds the loss (no gradient arrives for h), chunk 32 over L = 37."""
    ins, st = _inputs(device, 1, 1, 37, 16, 16, True, gate_scale=3.0)
    _, (C, n, _) = _call(mlstm, ins, st, True, impl="triton", chunk_size=32)
    ins64, st64 = as64(ins), as64(st)
    _, (C64, n64, _) = _call(mlstm_ref, ins64, st64, True, chunk_size=8)
    check((C, n), (C64, n64), TOL, ["C", "n"])
    wC, wn = torch.randn_like(C), torch.randn_like(n)
    leaves, leaves64 = ins + st[:2], ins64 + st64[:2]
    gr = torch.autograd.grad((C * wC).sum() + (n * wn).sum(), leaves, allow_unused=True)
    gr64 = torch.autograd.grad((C64 * wC.double()).sum() + (n64 * wn.double()).sum(), leaves64,
                               allow_unused=True)
    for a, b, name in zip(gr, gr64, NAMES):
        if b is None or b.abs().max() == 0:  # q gets no gradient from the state
            assert a is None or a.abs().max() == 0, name
        else:
            assert rel_err(a, b) <= TOL, name


def test_fp16_inputs_and_strided_views(device):
    """[B, L, H, d] -> [B, H, L, d] views (as in the layer), fp16 in / out, fp32 inside."""
    B, L, H, K = 1, 19, 2, 16
    x = leaf(torch.randn(B, L, H, 3 * K, device=device).half())
    g = leaf(torch.randn(B, L, H, 2, device=device) * 3)
    q, k, v = (t.transpose(1, 2) for t in x.split(K, dim=-1))
    ig, fp = (t[..., 0].transpose(1, 2) for t in g.split(1, dim=-1))
    h = mlstm(q, k, v, ig, F.logsigmoid(fp), impl="triton")
    assert h.dtype == torch.float16
    x64, g64 = as64([x, g])
    q64, k64, v64 = (t.transpose(1, 2) for t in x64.split(K, dim=-1))
    ig64, fp64 = (t[..., 0].transpose(1, 2) for t in g64.split(1, dim=-1))
    h64 = mlstm_ref(q64, k64, v64, ig64, F.logsigmoid(fp64))
    check(h, h64, 3e-3)
    gh = torch.randn_like(h)
    dx, dg = torch.autograd.grad(h, (x, g), gh)
    assert dx.dtype == torch.float16 and torch.isfinite(dx).all() and torch.isfinite(dg).all()


def test_torch_impl_and_errors():
    q, k, v = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    ig, lf = torch.randn(1, 1, 5), F.logsigmoid(torch.randn(1, 1, 5))
    assert torch.equal(mlstm(q, k, v, ig, lf, chunk_size=2, impl="torch"),
                       mlstm_chunked(q, k, v, ig, lf, 2)[0])
    with pytest.raises(ValueError):
        mlstm(q, k, v, ig[..., :4], lf, impl="torch")
    with pytest.raises(ValueError):
        mlstm(q, k, v, ig, lf, initial_state=(torch.zeros(1, 1, 8, 8),), impl="torch")


@pytest.mark.parametrize("d_model,n_heads,chunk", [(32, 2, 64), (24, 2, 16)])
def test_layer_triton_path_equals_torch_path(device, d_model, n_heads, chunk):
    from mad_bench.primitives import REGISTRY

    entry = REGISTRY["mlstm"]
    assert entry.module.has_triton
    L = 19
    mk = lambda impl: entry.module(  # noqa: E731
        entry.config(type="mlstm", impl=impl, n_heads=n_heads, chunk_size=chunk), d_model, 64)
    m_torch, m_tri = mk("torch").to(device), mk("triton").to(device)
    with torch.no_grad():  # strong, input-dependent gates
        m_torch.gates.weight.normal_(0.0, 1.0)
    m_tri.load_state_dict(m_torch.state_dict())
    x = torch.randn(2 if n_heads == 1 else 1, L, d_model, device=device)
    check_layer_paths(m_torch, m_tri, x, TOL, 2 * TOL, allow_unused=True)


def test_chunk_size_means_the_same_on_both_paths(device):
    """The kernel runs at the spec's chunk length: a chunk of 16 over L = 37 (three chunks) and
    of 64 (one) both equal the fp64 reference; a chunk the kernel cannot take is an error under
    impl 'triton' (spec-time) and runs the torch form under 'auto'."""
    ins, st = _inputs(device, 1, 2, 37, 16, 16, True, gate_scale=3.0)
    ref = _call(mlstm_ref, as64(ins), as64(st), True, chunk_size=8)
    for chunk in (16, 64):
        got = _call(mlstm, ins, st, True, impl="triton", chunk_size=chunk)
        check((got[0], *got[1][:2]), (ref[0], *ref[1][:2]), TOL, ["h", "C", "n"])
    from mad_bench.configs.primitives.mlstm import MLSTMConfig

    with pytest.raises(ValueError, match="chunk_size=8: impl 'triton' needs a power of two"):
        MLSTMConfig(impl="triton", chunk_size=8).check(32)
    with pytest.raises(ValueError, match="power of two"):
        _call(mlstm, ins, st, False, impl="triton", chunk_size=24)
    auto = _call(mlstm, ins, st, False, impl="auto", chunk_size=24)
    assert torch.equal(auto, _call(mlstm, ins, st, False, impl="torch", chunk_size=24))
