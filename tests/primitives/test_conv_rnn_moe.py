"""Tests of hyena, short-conv, rwkv6, lstm, gru (sequence) and moe (channel)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mad_bench.configs.primitives.gru import GRUConfig
from mad_bench.configs.primitives.hyena import HyenaConfig
from mad_bench.configs.primitives.lstm import LSTMConfig
from mad_bench.configs.primitives.moe import MoEConfig
from mad_bench.configs.primitives.rwkv6 import RWKV6Config
from mad_bench.configs.primitives.short_conv import ShortConvConfig
from mad_bench.ops.rwkv6 import wkv6_chunked
from mad_bench.primitives.channel.moe import MoE
from mad_bench.primitives.sequence.gru import GRU
from mad_bench.primitives.sequence.hyena import Hyena, fft_causal_conv
from mad_bench.primitives.sequence.lstm import LSTM
from mad_bench.primitives.sequence.rwkv6 import RWKV6
from mad_bench.primitives.sequence.short_conv import ShortConv


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def run_steps(m, x):
    state = m.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        before = _snapshot(state)
        y, new_state = m.step(x[:, t], state)
        assert _same(before, state), "step mutated its input state"
        state = new_state
        ys.append(y)
    return torch.stack(ys, 1)


def _snapshot(state):
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _snapshot(v) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(_snapshot(v) for v in state)
    return state


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return all(_same(x, y) for x, y in zip(a, b))
    return a == b


SEQ_CASES = [
    ("hyena", lambda: Hyena(HyenaConfig(), 32, 24)),
    ("hyena-o3-h4", lambda: Hyena(HyenaConfig(order=3, num_heads=4, filter_order=8,
                                              emb_dim=5, proj_groups=1), 32, 24)),
    ("short-conv", lambda: ShortConv(ShortConvConfig(), 32, 24)),
    ("short-conv-noproj", lambda: ShortConv(ShortConvConfig(projections=False,
                                                            activation="none"), 32, 24)),
    ("rwkv6", lambda: RWKV6(RWKV6Config(chunk_size=4), 32, 24)),
    ("lstm", lambda: LSTM(LSTMConfig(), 32, 24)),
    ("gru", lambda: GRU(GRUConfig(), 32, 24)),
]


def _randomize(m):
    """Larger random weights than the tiny inits so that every path matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name,make", SEQ_CASES, ids=[c[0] for c in SEQ_CASES])
def test_step_equals_parallel(name, make):
    torch.manual_seed(0)
    m = make()
    _randomize(m)
    x = torch.randn(3, 17, 32)
    with torch.no_grad():
        y_par = m(x)
        y_step = run_steps(m, x)
    assert y_par.shape == x.shape
    assert rel_err(y_step, y_par) < 1e-4


@pytest.mark.parametrize("name,make", SEQ_CASES, ids=[c[0] for c in SEQ_CASES])
def test_causal_and_all_grads(name, make):
    torch.manual_seed(0)
    m = make()
    x = torch.randn(2, 17, 32, requires_grad=True)
    y = m(x)
    # causality: output at t=5 must not depend on inputs after t=5
    gx = torch.autograd.grad(y[:, 5].sum(), x, retain_graph=True)[0]
    assert gx[:, 6:].abs().max() <= 1e-6 * gx[:, :6].abs().max()  # FFT round-off only
    y.pow(2).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


# ---------------------------------------------------------------- hand-checkable cases


def test_short_conv_hand():
    m = ShortConv(ShortConvConfig(kernel_size=3, projections=False, activation="none"), 2, 8)
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, 0.0, 1.0]]]))
        m.conv.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[[1.0, 5.0], [10.0, 6.0], [100.0, 7.0], [1000.0, 8.0]]])
    # channel 0: y_t = 3 x_t + 2 x_{t-1} + 1 x_{t-2} + 0.5 ; channel 1: identity
    expect = torch.tensor([[[3.5, 5.0], [32.5, 6.0], [321.5, 7.0], [3210.5, 8.0]]])
    torch.testing.assert_close(m(x), expect)
    torch.testing.assert_close(run_steps(m, x), expect)


def test_fft_conv_matches_direct():
    u, k = torch.randn(2, 3, 11), torch.randn(3, 11)
    direct = torch.zeros_like(u)
    for t in range(11):
        for s in range(t + 1):
            direct[..., t] += k[:, t - s] * u[..., s]
    torch.testing.assert_close(fft_causal_conv(u, k), direct, atol=1e-5, rtol=1e-5)


def test_hyena_naive():
    """Order-2 Hyena against a loop written from the equations (identity-ish projections)."""
    torch.manual_seed(0)
    d, L = 4, 6
    m = Hyena(HyenaConfig(inner_factor=1, proj_groups=1), d, 8)
    x = torch.randn(1, L, d)
    W, b = m.in_proj.weight, m.in_proj.bias
    z = x[0] @ W.T + b  # [L, 3d]
    k = m.short_filter.weight[:, 0]  # [3d, 3]
    zc = torch.zeros_like(z)
    for t in range(L):
        for j in range(3):
            if t - j >= 0:
                zc[t] += k[:, 2 - j] * z[t - j]
        zc[t] += m.short_filter.bias
    x0, x1, v = zc[:, :d], zc[:, d : 2 * d], zc[:, 2 * d :]
    h = m.filter(8)[:, :d]  # [T, d]
    u = v * x1
    conv = torch.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            conv[t] += h[t - s] * u[s]
        conv[t] += m.D[0] * u[t]
    y = (conv * x0) @ m.out_proj.weight.T + m.out_proj.bias
    torch.testing.assert_close(m(x)[0], y, atol=1e-5, rtol=1e-4)


def test_hyena_filter_window():
    m = Hyena(HyenaConfig(), 8, 16)
    h = m.filter(16)
    assert h.shape == (16, 32)
    # the filter of length L is the prefix of the max_len filter
    torch.testing.assert_close(m._filters(5), m._filters(16)[..., :5])


def test_wkv6_naive_recurrence():
    """Chunked WKV against the recurrence S_t = diag(w_t) S + k^T v, o = r (S + diag(u) k^T v)."""
    torch.manual_seed(0)
    B, H, L, K = 2, 2, 13, 4
    r, k, v = (torch.randn(B, H, L, K, dtype=torch.float64) for _ in range(3))
    logw = -torch.rand(B, H, L, K, dtype=torch.float64) * 3
    u = torch.randn(H, K, dtype=torch.float64)
    S = torch.zeros(B, H, K, K, dtype=torch.float64)
    out = []
    for t in range(L):
        kv = k[:, :, t, :, None] * v[:, :, t, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", r[:, :, t], S + u[None, :, :, None] * kv))
        S = logw[:, :, t].exp()[..., None] * S + kv
    ref = torch.stack(out, 2)
    for chunk in (1, 4, 5, 16):
        torch.testing.assert_close(wkv6_chunked(r, k, v, logw, u, chunk), ref)


def test_wkv6_strong_decay_is_finite():
    B, H, L, K = 1, 1, 64, 4
    r, k, v = (torch.randn(B, H, L, K) for _ in range(3))
    logw = torch.full((B, H, L, K), -50.0)  # exp(+50 * 16) would overflow a factored form
    o = wkv6_chunked(r, k, v, logw, torch.zeros(H, K), 16)
    assert torch.isfinite(o).all()
    # total forgetting, u = 0: S_{t-1} = k_{t-1}^T v_{t-1}, so o_t = (r_t . k_{t-1}) v_{t-1}
    expect = torch.zeros_like(o)
    expect[:, :, 1:] = (r[:, :, 1:] * k[:, :, :-1]).sum(-1, keepdim=True) * v[:, :, :-1]
    torch.testing.assert_close(o, expect)


def test_rwkv6_hand_single_token_shift():
    """At t=0 the shift sees zeros; with zero bonus and S=0 the output is GroupNorm(0)*g -> 0."""
    m = RWKV6(RWKV6Config(), 32, 8)
    with torch.no_grad():
        m.bonus.zero_()
    y = m(torch.randn(2, 3, 32))
    torch.testing.assert_close(y[:, 0], torch.zeros(2, 32))


def test_lstm_hand():
    """nn.LSTM matches the textbook equations (the module is what we wrap; check the wiring)."""
    torch.manual_seed(0)
    m = LSTM(LSTMConfig(out_proj=False), 3, 8)
    x = torch.randn(1, 4, 3)
    Wi, Wh = m.rnn.weight_ih_l0, m.rnn.weight_hh_l0
    b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0
    h = c = torch.zeros(3)
    ys = []
    for t in range(4):
        i, f, g, o = (Wi @ x[0, t] + Wh @ h + b).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(ys), atol=1e-6, rtol=1e-5)


def test_gru_hand():
    torch.manual_seed(0)
    m = GRU(GRUConfig(out_proj=False), 3, 8)
    x = torch.randn(1, 4, 3)
    Wi, Wh, bi, bh = m.rnn.weight_ih_l0, m.rnn.weight_hh_l0, m.rnn.bias_ih_l0, m.rnn.bias_hh_l0
    h = torch.zeros(3)
    ys = []
    for t in range(4):
        ir, iz, in_ = (Wi @ x[0, t] + bi).chunk(3)
        hr, hz, hn = (Wh @ h + bh).chunk(3)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        h = (1 - z) * n + z * h
        ys.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(ys), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- MoE


def _moe_naive(m: MoE, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        logits = m.router.weight @ x[n]
        top, idx = logits.topk(m.cfg.top_k)
        g = top.softmax(-1)
        for j, e in enumerate(idx.tolist()):
            h = x[n] @ m.w_in[e]
            gate, up = h.split(m.cfg.d_inner)
            f = (F.gelu(gate, approximate="tanh") * up) @ m.w_out[e]
            out[n] += g[j] * f
    return out


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_moe_against_naive(dispatch):
    torch.manual_seed(0)
    m = MoE(MoEConfig(dispatch=dispatch), 32, 8)
    x = torch.randn(2, 9, 32)
    y = m(x)
    torch.testing.assert_close(y.reshape(-1, 32), _moe_naive(m, x.reshape(-1, 32)),
                               atol=1e-5, rtol=1e-4)
    # step == forward on one token
    y_step = torch.stack([m.step(x[:, t], None)[0] for t in range(9)], 1)
    assert rel_err(y_step, y) < 1e-5


def test_moe_dense_equals_sparse_with_bias_and_mlp():
    torch.manual_seed(0)
    a = MoE(MoEConfig(dispatch="dense", bias=True, expert="mlp", top_k=3), 16, 8)
    b = MoE(MoEConfig(dispatch="sparse", bias=True, expert="mlp", top_k=3), 16, 8)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 5, 16)
    torch.testing.assert_close(a(x), b(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.aux_loss(), b.aux_loss())


def test_moe_aux_loss_hand():
    """Router that sends every token to experts {0, 1} with uniform probs over 4 experts."""
    m = MoE(MoEConfig(n_experts=4, top_k=2, aux_loss_weight=0.5), 4, 8)
    with torch.no_grad():
        m.router.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0.0] * 4, [0.0] * 4]))
    x = torch.zeros(1, 3, 4)
    x[..., 0] = 1.0  # logits (1, 1, 0, 0)
    m(x)
    p = torch.tensor([math.e, math.e, 1, 1]) / (2 * math.e + 2)
    f = torch.tensor([0.5, 0.5, 0.0, 0.0])
    torch.testing.assert_close(m.aux_loss(), 0.5 * 4 * (f * p).sum())


def test_moe_all_grads():
    torch.manual_seed(0)
    for dispatch in ("dense", "sparse"):
        m = MoE(MoEConfig(dispatch=dispatch, bias=True), 32, 8)
        x = torch.randn(4, 16, 32)
        loss = m(x).pow(2).sum() + m.aux_loss()
        loss.backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (dispatch, name)


# ---------------------------------------------------------------- config checks


def test_config_errors():
    with pytest.raises(ValueError, match="head_dim"):
        RWKV6Config(head_dim=12).check(32)
    with pytest.raises(ValueError, match="num_heads"):
        HyenaConfig(num_heads=3).check(32)
    with pytest.raises(ValueError, match="proj_groups"):
        HyenaConfig(proj_groups=5, inner_factor=1).check(32)
    with pytest.raises(ValueError, match="emb_dim"):
        HyenaConfig(emb_dim=4).check(32)
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(top_k=9).check(128)
    with pytest.raises(ValueError, match="d_hidden"):
        LSTMConfig(d_hidden=16, out_proj=False).check(32)
    with pytest.raises(ValueError, match="d_hidden"):
        GRUConfig(d_hidden=16, out_proj=False).check(32)
    with pytest.raises(ValidationError, match="kernel_size"):
        ShortConvConfig(kernel_size=0)
    with pytest.raises(ValidationError):
        HyenaConfig(order=1)
    with pytest.raises(ValidationError):
        MoEConfig(bogus=1)


def test_registered_names():
    from mad_bench.primitives.registry import REGISTRY

    for name in ("hyena", "short-conv", "rwkv6", "lstm", "gru", "moe"):
        assert name in REGISTRY
