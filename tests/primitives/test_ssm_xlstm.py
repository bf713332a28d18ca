"""Tests of the mamba, mamba2, mlstm and slstm sequence mixers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mad_bench.configs.primitives.mamba import MambaConfig
from mad_bench.configs.primitives.mamba2 import Mamba2Config
from mad_bench.configs.primitives.mlstm import MLSTMConfig
from mad_bench.configs.primitives.slstm import SLSTMConfig
from mad_bench.ops.mlstm import mlstm_chunked
from mad_bench.ops.selective_scan.reference import selective_scan
from mad_bench.ops.slstm import slstm_cell
from mad_bench.ops.ssd.reference import ssd_chunked
from mad_bench.primitives.registry import REGISTRY
from mad_bench.primitives.sequence import mamba, mamba2, mlstm, slstm
from mad_bench.primitives.sequence.mamba import Mamba
from mad_bench.primitives.sequence.mamba2 import Mamba2
from mad_bench.primitives.sequence.mlstm import MLSTM
from mad_bench.primitives.sequence.slstm import SLSTM

D_MODEL, L = 32, 17


def run_steps(m, x):
    state = m.init_state(x.shape[0], x.device)
    ys = []
    for t in range(x.shape[1]):
        before = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
        y, state_new = m.step(x[:, t], state)
        for k, v in before.items():  # step must not mutate its input state
            assert torch.equal(state[k], v), k
        state = state_new
        ys.append(y)
    return torch.stack(ys, 1)


def assert_rel(a, b, tol=1e-4):
    err = (a - b).abs().max().item()
    scale = b.abs().max().item()
    assert err <= tol * max(scale, 1e-6), (err, scale)


def randomise(m, std=0.5):
    """Random weights everywhere (incl. zero-initialised gate weights)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name in ("A_log",):
                continue
            p.add_(torch.randn(p.shape, generator=g) * std / math.sqrt(max(p.shape[-1], 1)))


def test_registered():
    for name in ("mamba", "mamba2", "mlstm", "slstm"):
        assert name in REGISTRY and REGISTRY[name].kind == "sequence"
    assert mamba and mamba2 and mlstm and slstm


# ----------------------------------------------------------------------------- mamba
def naive_selective_scan(u, delta, A, B, C, D):
    b, d, l = u.shape
    h = torch.zeros(b, d, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(l):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[
            ..., None
        ] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(ys, -1), h


def test_selective_scan_by_hand():
    # d = n = 1, decay exp(-ln 2) = 1/2 per step, one unit impulse: y = 1, 1/2, 1/4 (+ D u)
    u = torch.tensor([[[1.0, 0.0, 0.0]]])
    delta = torch.ones(1, 1, 3)
    A = torch.tensor([[-math.log(2.0)]])
    B = C = torch.ones(1, 1, 3)
    y = selective_scan(u, delta, A, B, C, D=torch.tensor([3.0]), chunk_size=2)
    torch.testing.assert_close(y, torch.tensor([[[4.0, 0.5, 0.25]]]))


@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_selective_scan_matches_loop(chunk):
    torch.manual_seed(0)
    b, d, n, l = 2, 5, 3, 19
    u = torch.randn(b, d, l, dtype=torch.float64)
    dt_raw = torch.randn(b, d, l, dtype=torch.float64)
    bias = torch.randn(d, dtype=torch.float64)
    A = -torch.rand(d, n, dtype=torch.float64) * 3
    B, C = torch.randn(b, n, l, dtype=torch.float64), torch.randn(b, n, l, dtype=torch.float64)
    D, z = torch.randn(d, dtype=torch.float64), torch.randn(b, d, l, dtype=torch.float64)
    y, last = selective_scan(
        u, dt_raw, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True,
        return_last_state=True, chunk_size=chunk,
    )
    ref, h = naive_selective_scan(u, F.softplus(dt_raw + bias[:, None]), A, B, C, D)
    torch.testing.assert_close(y, (ref * F.silu(z)).to(y.dtype), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, h, rtol=1e-5, atol=1e-5)  # fp64 in, fp64 state
    # grouped B/C ([b, g, n, l], g = 1) is the same as shared
    y2 = selective_scan(u, F.softplus(dt_raw + bias[:, None]), A, B[:, None], C[:, None], D,
                        z=z, chunk_size=chunk)
    torch.testing.assert_close(y2, y, rtol=1e-5, atol=1e-6)


def test_mamba_forward_matches_naive():
    torch.manual_seed(0)
    m = Mamba(MambaConfig(chunk_size=4), D_MODEL, 64)
    x = torch.randn(2, L, D_MODEL)
    with torch.no_grad():
        xs, z = m.in_proj(x).chunk(2, -1)
        K = m.cfg.d_conv
        xp = F.pad(xs, (0, 0, K - 1, 0))
        w = m.conv1d.weight[:, 0]  # [E, K]
        xc = torch.stack([(xp[:, t : t + K] * w.t()).sum(1) for t in range(L)], 1) + m.conv1d.bias
        xc = F.silu(xc)
        dt, Bm, Cm = m.x_proj(xc).split([m.dt_rank, m.cfg.d_state, m.cfg.d_state], -1)
        delta = F.softplus(m.dt_proj(dt))
        y, _ = naive_selective_scan(
            xc.transpose(1, 2), delta.transpose(1, 2), -torch.exp(m.A_log), Bm.transpose(1, 2),
            Cm.transpose(1, 2), m.D,
        )
        ref = m.out_proj(y.transpose(1, 2) * F.silu(z))
        assert_rel(m(x), ref, 1e-5)
    assert m.dt_rank == 2 and m.d_inner == 64  # 'auto' = ceil(32 / 16); expand 2


# ----------------------------------------------------------------------------- mamba2
def naive_ssd(x, dt, A, B, C):
    b, l, h, p = x.shape
    rep = h // B.shape[2]
    S = torch.zeros(b, h, p, B.shape[3], dtype=x.dtype)
    ys = []
    for t in range(l):
        Bh = B[:, t].repeat_interleave(rep, 1)
        Ch = C[:, t].repeat_interleave(rep, 1)
        S = torch.exp(dt[:, t] * A)[..., None, None] * S + (dt[:, t, :, None] * x[:, t])[
            ..., None
        ] * Bh[:, :, None]
        ys.append((S * Ch[:, :, None]).sum(-1))
    return torch.stack(ys, 1), S


def test_ssd_by_hand():
    x = torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1)
    dt = torch.ones(1, 3, 1)
    A = torch.tensor([-math.log(2.0)])
    B = C = torch.ones(1, 3, 1, 1)
    y, last = ssd_chunked(x, dt, A, B, C, chunk_size=2)
    torch.testing.assert_close(y.flatten(), torch.tensor([1.0, 0.5, 2.25]))
    torch.testing.assert_close(last.flatten(), torch.tensor([2.25]))


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_ssd_matches_loop(chunk):
    torch.manual_seed(0)
    b, l, h, p, g, n = 2, 19, 4, 3, 2, 5
    x = torch.randn(b, l, h, p, dtype=torch.float64)
    dt = F.softplus(torch.randn(b, l, h, dtype=torch.float64))
    A = -torch.rand(h, dtype=torch.float64) * 4
    B = torch.randn(b, l, g, n, dtype=torch.float64)
    C = torch.randn(b, l, g, n, dtype=torch.float64)
    y, last = ssd_chunked(x, dt, A, B, C, chunk_size=chunk)
    ref, S = naive_ssd(x, dt, A, B, C)
    assert y.dtype == last.dtype == torch.float64  # fp64 in, fp64 throughout
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, S, rtol=1e-10, atol=1e-10)


def test_mamba2_shapes_and_defaults():
    m = Mamba2(Mamba2Config(), 128, 64)
    assert (m.d_inner, m.n_heads, m.cfg.d_state) == (256, 8, 16)
    assert m(torch.randn(2, 5, 128)).shape == (2, 5, 128)


# ----------------------------------------------------------------------------- mlstm
def naive_mlstm(q, k, v, i_gate, log_f):
    """Unstabilised mLSTM recurrence in float64: h = C~ q / max(|n~ q|, 1)."""
    b, h, l, dk = q.shape
    C = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64)
    n = torch.zeros(b, h, dk, dtype=torch.float64)
    out = []
    for t in range(l):
        f, i = log_f[:, :, t].exp()[..., None], i_gate[:, :, t].exp()[..., None]
        C = f[..., None] * C + i[..., None] * k[:, :, t, :, None] * v[:, :, t, None, :]
        n = f * n + i * k[:, :, t]
        num = (q[:, :, t, :, None] * C).sum(-2)
        den = (q[:, :, t] * n).sum(-1).abs().clamp(min=1.0)
        out.append(num / den[..., None])
    return torch.stack(out, 2)


def test_mlstm_by_hand():
    # one head, d_h 1, q = k = 1, f = 1/2, i = 1/4: C~ = 1/2, 9/4; n~ = 1/4, 3/8
    # h_1 = 0.5 / max(0.25, 1) = 0.5 ; h_2 = (0.25 + 2) / max(0.375, 1) = 2.25
    q = k = torch.ones(1, 1, 2, 1)
    v = torch.tensor([2.0, 8.0]).view(1, 1, 2, 1)
    i_gate = torch.full((1, 1, 2), math.log(0.25))
    log_f = torch.full((1, 1, 2), math.log(0.5))
    for chunk in (1, 2):
        h, _ = mlstm_chunked(q, k, v, i_gate, log_f, chunk_size=chunk)
        torch.testing.assert_close(h.flatten(), torch.tensor([0.5, 2.25]))
    # large input gates: h = C~ q / |n~ q| = 8 at t=2 ... (8 e^20 + 2 e^10 / 2) / (e^20 + e^10 / 2)
    i_big = torch.tensor([10.0, 20.0]).view(1, 1, 2)
    h, _ = mlstm_chunked(q, k, v, i_big, log_f, chunk_size=1)
    e = math.exp(-10)
    torch.testing.assert_close(h.flatten(), torch.tensor([2.0, (8 + e) / (1 + 0.5 * e)]))


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_mlstm_chunked_matches_loop(chunk):
    torch.manual_seed(0)
    b, h, l, d = 2, 3, 19, 4
    q, k, v = (torch.randn(b, h, l, d, dtype=torch.float64) for _ in range(3))
    i_gate = torch.randn(b, h, l, dtype=torch.float64) * 3
    log_f = F.logsigmoid(torch.randn(b, h, l, dtype=torch.float64) * 3)
    out, _ = mlstm_chunked(q, k, v, i_gate, log_f, chunk_size=chunk)
    ref = naive_mlstm(q, k, v, i_gate, log_f)
    torch.testing.assert_close(out, ref.float(), rtol=1e-4, atol=1e-5)


def test_mlstm_stable_with_huge_gates():
    torch.manual_seed(0)
    m = MLSTM(MLSTMConfig(chunk_size=4), D_MODEL, 64)
    randomise(m)
    with torch.no_grad():
        m.gates.bias[:4] += 200.0  # exp(200) overflows fp32 without the stabiliser
    x = torch.randn(2, L, D_MODEL)
    y = m(x)
    assert torch.isfinite(y).all()
    assert_rel(run_steps(m, x), y)


# ----------------------------------------------------------------------------- slstm
def test_slstm_cell_by_hand():
    # R = 0, gates i~ = 0, f~ = 0 (f = 1/2), o~ = 0 (o = 1/2), z~ = atanh(0.6), atanh(0.2)
    # c_1 = .6, n_1 = 1, h_1 = .3 ; c_2 = .3 + .2 = .5, n_2 = 1.5, h_2 = .5 * .5 / 1.5
    R = torch.zeros(1, 1, 4)
    state = tuple(torch.zeros(1, 1, 1) for _ in range(3)) + (torch.full((1, 1, 1), -math.inf),)
    hs = []
    for zt in (0.6, 0.2):
        wx = torch.tensor([0.0, 0.0, math.atanh(zt), 0.0]).view(1, 1, 4)
        state = slstm_cell(wx, R, state)
        hs.append(state[0].item())
    assert hs == pytest.approx([0.3, 0.5 * 0.5 / 1.5], rel=1e-6)


def test_slstm_forward_matches_naive():
    torch.manual_seed(0)
    m = SLSTM(SLSTMConfig(), D_MODEL, 64)
    x = torch.randn(2, L, D_MODEL)
    H, dh = m.n_heads, m.head_dim
    with torch.no_grad():
        wx = m.W(x).double().view(2, L, H, 4 * dh)
        R = m.R.double()
        h = c = n = torch.zeros(2, H, dh, dtype=torch.float64)
        hs = []
        for t in range(L):  # unstabilised recurrence
            pre = wx[:, t] + torch.einsum("bhd,hde->bhe", h, R)
            i, f, z, o = pre.chunk(4, -1)
            c = torch.sigmoid(f) * c + i.exp() * z.tanh()
            n = torch.sigmoid(f) * n + i.exp()
            h = torch.sigmoid(o) * c / n
            hs.append(h)
        hh = torch.stack(hs, 1)
        var = hh.var(-1, keepdim=True, unbiased=False)
        hh = (hh - hh.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-6)
        ref = m.out((hh.flatten(-2) * m.norm_weight.double()).float())
        assert_rel(m(x), ref, 1e-5)


# ----------------------------------------------------------------------------- common
CASES = [
    (Mamba, MambaConfig(chunk_size=4)),
    (Mamba, MambaConfig()),
    (Mamba2, Mamba2Config(chunk_size=4, headdim=16, d_state=8, n_groups=2)),
    (Mamba2, Mamba2Config()),
    (MLSTM, MLSTMConfig(chunk_size=4)),
    (MLSTM, MLSTMConfig(d_conv=0)),
    (SLSTM, SLSTMConfig()),
]


@pytest.mark.parametrize("cls,cfg", CASES, ids=lambda c: getattr(c, "__name__", None) or repr(c))
def test_step_equals_parallel(cls, cfg):
    torch.manual_seed(0)
    m = cls(cfg, D_MODEL, 64)
    randomise(m)
    x = torch.randn(3, L, D_MODEL)
    with torch.no_grad():
        assert_rel(run_steps(m, x), m(x))


@pytest.mark.parametrize("cls,cfg", CASES, ids=lambda c: getattr(c, "__name__", None) or repr(c))
def test_all_params_get_grads(cls, cfg):
    torch.manual_seed(0)
    m = cls(cfg, D_MODEL, 64)
    m(torch.randn(2, L, D_MODEL)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert m.flops_per_token(L) > m.mixing_flops_per_token(L) > 0


@pytest.mark.parametrize(
    "cfg,d_model,field",
    [
        (Mamba2Config(headdim=48), 32, "headdim"),
        (Mamba2Config(headdim=16, n_groups=3), 32, "n_groups"),
        (Mamba2Config(A_init_min=20.0), 32, "A_init_min"),
        (MambaConfig(dt_min=0.5, dt_max=0.1), 32, "dt_min"),
        (MLSTMConfig(n_heads=5), 32, "n_heads"),
        (SLSTMConfig(n_heads=3), 32, "n_heads"),
    ],
)
def test_check_errors(cfg, d_model, field):
    with pytest.raises(ValueError, match=field):
        cfg.check(d_model)


def test_pydantic_errors():
    with pytest.raises(ValidationError, match="dt_rank"):
        MambaConfig(dt_rank=0)
    with pytest.raises(ValidationError, match="d_state"):
        Mamba2Config(d_state=0)
    with pytest.raises(ValidationError, match="bogus"):
        MLSTMConfig(bogus=1)
    assert MambaConfig(dt_rank=3).dt_rank == 3
    assert (MambaConfig().d_state, MambaConfig().d_conv, MambaConfig().expand) == (4, 4, 2)
