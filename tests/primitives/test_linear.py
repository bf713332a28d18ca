"""Linear-attention family: linear-attention, gated-linear-attention, retnet, deltanet."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.delta_rule.reference import chunk_delta_rule, recurrent_delta_rule
from mad_bench.ops.gla.reference import chunk_gla, chunk_simple_gla, recurrent_gla, recurrent_simple_gla
from mad_bench.primitives.sequence import deltanet, gla, linear_attention, retnet

D, L, B = 32, 17, 2

CASES = [
    (linear_attention.LinearAttention, linear_attention.LinearAttentionConfig()),
    (linear_attention.LinearAttention,
     linear_attention.LinearAttentionConfig(n_heads=4, feature_map="hadamard", chunk_size=8)),
    (linear_attention.LinearAttention,
     linear_attention.LinearAttentionConfig(n_heads=2, normalize=False, feature_map="relu")),
    (gla.GatedLinearAttention, gla.GatedLinearAttentionConfig()),
    (gla.GatedLinearAttention, gla.GatedLinearAttentionConfig(n_heads=2, chunk_size=8,
                                                              sub_chunk_size=4, norm="layer")),
    (retnet.RetNet, retnet.RetNetConfig()),
    (retnet.RetNet, retnet.RetNetConfig(n_heads=4, rotary=False, chunk_size=8, norm="rms")),
    (deltanet.DeltaNet, deltanet.DeltaNetConfig()),
    (deltanet.DeltaNet, deltanet.DeltaNetConfig(short_conv=False, output_gate=True, chunk_size=8)),
]
IDS = [f"{c.type}-{i}" for i, (_, c) in enumerate(CASES)]


def _randomise(m: torch.nn.Module) -> None:
    """Random weights everywhere (norm weights and biases included) so that no path is trivial."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            scale, shift = (0.3, 0.0) if p.dim() > 1 else (0.5, 1.0)
            p.copy_(torch.randn(p.shape, generator=g) * scale + shift)


# ----------------------------------------------------------------------------- (2) step == parallel


@pytest.mark.parametrize("module,cfg", CASES, ids=IDS)
def test_step_matches_parallel(module, cfg):
    torch.manual_seed(0)
    m = module(cfg, D, 64)
    _randomise(m)
    x = torch.randn(B, L, D)
    y = m(x)
    state = m.init_state(B)
    outs = []
    for t in range(L):
        before = {k: v.clone() for k, v in state.items() if torch.is_tensor(v)} if isinstance(
            state, dict) else state.clone()
        y_t, new_state = m.step(x[:, t], state)
        # the input state is not mutated in place
        if isinstance(state, dict):
            for k, v in before.items():
                assert torch.equal(state[k], v)
        else:
            assert torch.equal(state, before)
        state = new_state
        outs.append(y_t)
    ys = torch.stack(outs, 1)
    assert y.shape == (B, L, D)
    rel = (ys - y).abs().max() / y.abs().max()
    assert rel < 1e-4, rel


# ----------------------------------------------------------------------------- (3) gradients


@pytest.mark.parametrize("module,cfg", CASES, ids=IDS)
def test_all_params_get_grads(module, cfg):
    torch.manual_seed(0)
    m = module(cfg, D, 64)
    m(torch.randn(B, L, D)).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert m.flops_per_token(L) > m.mixing_flops_per_token(L) > 0


# ----------------------------------------------------------------------------- (4) config checks


@pytest.mark.parametrize(
    "cfg,field",
    [
        (linear_attention.LinearAttentionConfig(n_heads=5), "n_heads"),
        (gla.GatedLinearAttentionConfig(n_heads=5), "n_heads"),
        (gla.GatedLinearAttentionConfig(expand_v=0.3), "expand_v"),
        (gla.GatedLinearAttentionConfig(chunk_size=24, sub_chunk_size=16), "sub_chunk_size"),
        (retnet.RetNetConfig(n_heads=3), "n_heads"),
        (retnet.RetNetConfig(n_heads=32), "rotary"),  # key head dim 1 is odd
        (deltanet.DeltaNetConfig(expand_k=0.75, n_heads=16), "expand_k"),
    ],
)
def test_config_check(cfg, field):
    with pytest.raises(ValueError, match=field):
        cfg.check(D)


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(Exception):
        gla.GatedLinearAttentionConfig(heads=4)
    with pytest.raises(Exception):
        linear_attention.LinearAttentionConfig(feature_map="softmax")
    with pytest.raises(Exception):
        deltanet.DeltaNetConfig(conv_size=1)


# ----------------------------------------------------------------------------- (1) hand checks


def test_chunk_functions_by_hand():
    # GLA, one head, K = V = 1: S_0 = 1*3 = 3; S_1 = 0.5*3 + 2*4 = 9.5; o = q * S
    q = torch.tensor([1.0, 1.0]).view(1, 1, 2, 1)
    k = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1)
    v = torch.tensor([3.0, 4.0]).view(1, 1, 2, 1)
    log_g = torch.full((1, 1, 2, 1), math.log(0.5))
    o = chunk_gla(q, k, v, log_g, chunk_size=16, sub_chunk_size=1)
    assert torch.allclose(o.flatten(), torch.tensor([3.0, 9.5]))
    o = chunk_simple_gla(q, k, v, log_g[..., 0], scale=2.0, chunk_size=1)
    assert torch.allclose(o.flatten(), torch.tensor([6.0, 19.0]))
    o = chunk_simple_gla(q, k, v, None)  # plain: 3, 3 + 8
    assert torch.allclose(o.flatten(), torch.tensor([3.0, 11.0]))
    # delta rule with beta = 1 overwrites the value stored at a key; beta = 0.5 moves halfway
    e1 = torch.tensor([1.0, 0.0])
    qk = torch.stack([e1, e1]).view(1, 1, 2, 2)
    vals = torch.tensor([[1.0, 2.0], [5.0, -1.0]]).view(1, 1, 2, 2)
    o = chunk_delta_rule(qk, qk, vals, torch.ones(1, 1, 2))
    assert torch.allclose(o[0, 0], vals[0, 0])
    o = chunk_delta_rule(qk, qk, vals, torch.full((1, 1, 2), 0.5))
    s1 = 0.5 * vals[0, 0, 0]
    assert torch.allclose(o[0, 0], torch.stack([s1, s1 + 0.5 * (vals[0, 0, 1] - s1)]))
    # a key orthogonal to the stored one leaves it alone
    qk2 = torch.stack([e1, torch.tensor([0.0, 1.0])]).view(1, 1, 2, 2)
    o = chunk_delta_rule(qk2[:, :, [0, 0]], qk2, vals, torch.ones(1, 1, 2))
    assert torch.allclose(o[0, 0, 1], vals[0, 0, 0])


@pytest.mark.parametrize("chunk,sub", [(4, 2), (8, 8), (64, 16)])
def test_chunk_functions_match_loops(chunk, sub):
    g = torch.Generator().manual_seed(0)
    Bq, H, T, K, V = 2, 2, 19, 4, 3
    q, k = torch.randn(Bq, H, T, K, generator=g), torch.randn(Bq, H, T, K, generator=g)
    v = torch.randn(Bq, H, T, V, generator=g)
    S0 = torch.randn(Bq, H, K, V, generator=g)
    log_g = F.logsigmoid(torch.randn(Bq, H, T, K, generator=g) * 4)
    beta = torch.rand(Bq, H, T, generator=g)
    kn = F.normalize(k, dim=-1)

    def close(a, b):
        assert torch.allclose(a[0], b[0], atol=1e-5, rtol=1e-4)
        assert torch.allclose(a[1], b[1], atol=1e-5, rtol=1e-4)

    close(chunk_gla(q, k, v, log_g, 0.7, chunk, sub, S0, True),
          recurrent_gla(q, k, v, log_g, 0.7, S0))
    close(chunk_simple_gla(q, k, v, log_g[..., 0], 0.7, chunk, S0, True),
          recurrent_simple_gla(q, k, v, log_g[..., 0], 0.7, S0))
    close(chunk_simple_gla(q, k, v, None, 0.7, chunk, S0, True),
          recurrent_simple_gla(q, k, v, None, 0.7, S0))
    close(chunk_delta_rule(q, kn, v, beta, 0.7, chunk, S0, True),
          recurrent_delta_rule(q, kn, v, beta, 0.7, S0))


def test_gla_stable_under_extreme_decay():
    q = torch.randn(1, 1, 40, 4, requires_grad=True)
    k, v = torch.randn(1, 1, 40, 4), torch.randn(1, 1, 40, 4)
    log_g = torch.full((1, 1, 40, 4), -60.0, requires_grad=True)  # exp(-60 * 16) underflows
    o = chunk_gla(q, k, v, log_g)
    o.sum().backward()
    assert torch.isfinite(o).all() and torch.isfinite(q.grad).all()
    assert torch.isfinite(log_g.grad).all()
    # only the current step survives: o_t = (q_t . k_t) v_t
    assert torch.allclose(o, (q * k).sum(-1, keepdim=True) * v, atol=1e-5)


def _split(t, H):  # [B, L, H*d] -> [B, H, L, d]
    return t.view(t.shape[0], t.shape[1], H, -1).transpose(1, 2)


def test_linear_attention_by_hand():
    # one head, identity projections, elu+1 feature map on positive inputs: phi(x) = x + 1
    cfg = linear_attention.LinearAttentionConfig(n_heads=1, eps=1e-9)
    m = linear_attention.LinearAttention(cfg, 2, 8)
    with torch.no_grad():
        m.qkv.weight.copy_(torch.cat([torch.eye(2)] * 3))
        m.out.weight.copy_(torch.eye(2))
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])
    y = m(x)[0]
    phi = x[0] + 1
    expected = []
    for t in range(3):
        w = torch.stack([phi[t] @ phi[s] for s in range(t + 1)])
        expected.append((w[:, None] * x[0, : t + 1]).sum(0) / w.sum())
    assert torch.allclose(y, torch.stack(expected), atol=1e-6)
    assert torch.allclose(y[0], x[0, 0])  # the first position sees only itself


def test_gla_matches_naive_loop():
    torch.manual_seed(0)
    m = gla.GatedLinearAttention(gla.GatedLinearAttentionConfig(n_heads=2, chunk_size=8,
                                                                sub_chunk_size=4), D, 64)
    _randomise(m)
    x = torch.randn(B, L, D)
    H, dk = 2, D // 2
    q, k, v = (_split(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    a = torch.sigmoid(_split(m.gk_up(m.gk_down(x)), H)) ** (1 / 16)  # exp(logsigmoid / 16)
    S = torch.zeros(B, H, dk, dk)
    outs = []
    for t in range(L):
        S = a[:, :, t, :, None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t] / math.sqrt(dk), S))
    o = torch.stack(outs, 1)  # [B, L, H, dv]
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.o_norm.weight
    y = m.o_proj(o.reshape(B, L, D) * F.silu(m.g_proj(x)))
    assert torch.allclose(m(x), y, atol=1e-5, rtol=1e-4)


def test_retnet_decays_and_naive_loop():
    torch.manual_seed(0)
    m = retnet.RetNet(retnet.RetNetConfig(n_heads=4, rotary=False, chunk_size=8), D, 64)
    gammas = torch.exp(m.log_gamma)
    assert torch.allclose(gammas, torch.tensor([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256]))
    _randomise(m)
    x = torch.randn(B, L, D)
    H, dk, dv = 4, D // 4, 2 * D // 4
    q, k, v = (_split(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    # retention's parallel form: (q k^T / sqrt(dk) * gamma^(t-s) [s <= t]) v
    t = torch.arange(L)
    decay = gammas[:, None, None] ** (t[:, None] - t[None, :]).clamp(min=0)
    decay = decay * (t[None, :] <= t[:, None])
    o = (q @ k.transpose(-1, -2) / math.sqrt(dk) * decay) @ v  # [B, H, L, dv]
    o = F.layer_norm(o.transpose(1, 2), (dv,), m.o_norm.weight, m.o_norm.bias, 1e-5)
    y = m.o_proj(F.silu(m.g_proj(x)) * o.reshape(B, L, 2 * D))
    assert torch.allclose(m(x), y, atol=1e-5, rtol=1e-4)


def test_deltanet_matches_naive_loop():
    torch.manual_seed(0)
    cfg = deltanet.DeltaNetConfig(n_heads=2, short_conv=False, qk_activation="identity",
                                  v_activation="identity", chunk_size=8)
    m = deltanet.DeltaNet(cfg, D, 64)
    _randomise(m)
    x = torch.randn(B, L, D)
    H, d = 2, D // 2
    q, k, v = (_split(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    beta = torch.sigmoid(m.b_proj(x))  # [B, L, H]
    S = torch.zeros(B, H, d, d)  # value-major, as in the paper: o = S q
    eye = torch.eye(d)
    outs = []
    for t in range(L):
        kt, vt, bt = k[:, :, t], v[:, :, t], beta[:, t, :, None, None]
        kkT = kt[..., :, None] * kt[..., None, :]
        S = S @ (eye - bt * kkT) + bt * vt[..., :, None] * kt[..., None, :]
        outs.append((S @ q[:, :, t, :, None])[..., 0] / math.sqrt(d))
    o = torch.stack(outs, 1)
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.o_norm.weight
    assert torch.allclose(m(x), m.o_proj(o.reshape(B, L, D)), atol=1e-5, rtol=1e-4)


def test_short_conv_is_causal():
    m = deltanet.DeltaNet(deltanet.DeltaNetConfig(), D, 64)
    x = torch.randn(1, L, D)
    y = m(x)
    x2 = x.clone()
    x2[:, 10:] = torch.randn(1, L - 10, D)
    assert torch.allclose(m(x2)[:, :10], y[:, :10], atol=1e-6)
