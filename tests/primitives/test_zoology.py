"""Tests of the Zoology / MAD-Lab mixers: based, sliding-window-attention, base-conv, h3,
gated-deltanet and hyena's outer-product mode."""
from __future__ import annotations

import math

import pytest
import torch

from mad_bench import load_spec
from mad_bench.configs.primitives.attention import AttentionConfig
from mad_bench.configs.primitives.base_conv import BaseConvConfig
from mad_bench.configs.primitives.based import BasedConfig
from mad_bench.configs.primitives.gated_deltanet import GatedDeltaNetConfig
from mad_bench.configs.primitives.h3 import H3Config
from mad_bench.configs.primitives.hyena import HyenaConfig
from mad_bench.configs.primitives.sliding_window_attention import SlidingWindowAttentionConfig
from mad_bench.ops.causal_conv import causal_conv1d
from mad_bench.primitives import REGISTRY
from mad_bench.primitives.sequence.attention import Attention
from mad_bench.primitives.sequence.base_conv import BaseConv
from mad_bench.primitives.sequence.based import Based, taylor_features
from mad_bench.primitives.sequence.gated_deltanet import GatedDeltaNet
from mad_bench.primitives.sequence.h3 import H3
from mad_bench.primitives.sequence.hyena import Hyena
from mad_bench.primitives.sequence.sliding_window_attention import SlidingWindowAttention

D, L, B, MAX = 32, 17, 2, 24
NEW = ["based", "sliding-window-attention", "base-conv", "h3", "gated-deltanet"]

CASES = {
    "based": lambda: Based(BasedConfig(), D, MAX),
    "based-h2-f4": lambda: Based(BasedConfig(n_heads=2, feature_dim=4, chunk_size=8), D, MAX),
    "swa-w5": lambda: SlidingWindowAttention(SlidingWindowAttentionConfig(window=5), D, MAX),
    "swa-h2-norope": lambda: SlidingWindowAttention(
        SlidingWindowAttentionConfig(window=3, n_heads=2, rotary_dim=0), D, MAX),
    "base-conv": lambda: BaseConv(BaseConvConfig(), D, MAX),
    "base-conv-long-act": lambda: BaseConv(BaseConvConfig(conv="long", use_act=True), D, MAX),
    "h3": lambda: H3(H3Config(), D, MAX),
    "h3-hd2-n8": lambda: H3(H3Config(head_dim=2, d_state=8), D, MAX),
    "h3-state-is-seq-len": lambda: H3(H3Config(head_dim=4, d_state=None), D, 23),
    "mh-hyena": lambda: Hyena(HyenaConfig(mode="outer-product", head_dim=8, inner_factor=1,
                                          filter_order=2), D, MAX),
    "mh-hyena-nobias": lambda: Hyena(HyenaConfig(mode="outer-product", head_dim=4, bias=False,
                                                 proj_groups=1), D, MAX),
    "gated-deltanet": lambda: GatedDeltaNet(GatedDeltaNetConfig(), D, MAX),
    "gated-deltanet-h2-plain": lambda: GatedDeltaNet(GatedDeltaNetConfig(
        n_heads=2, head_dim=8, short_conv=False, output_gate=False, chunk_size=4), D, MAX),
}


def run_steps(m, x):
    state = m.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


@pytest.mark.parametrize("name", CASES)
def test_step_equals_parallel(name):
    torch.manual_seed(0)
    m = CASES[name]().eval()
    x = torch.randn(B, L, D)
    with torch.no_grad():
        y, ys = m(x), run_steps(m, x)
    assert y.shape == (B, L, D) and torch.isfinite(y).all()
    assert ((ys - y).norm() / y.norm()).item() < 1e-4


@pytest.mark.parametrize("name", CASES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = CASES[name]()
    m(torch.randn(B, L, D)).pow(2).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("d_model", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("name", NEW)
def test_defaults_build_at_every_width(name, d_model):
    entry = REGISTRY[name]
    cfg = entry.config()
    cfg.check(d_model)
    m = entry.module(cfg, d_model, 16)
    assert m(torch.randn(1, 6, d_model)).shape == (1, 6, d_model)


def test_mad_lab_gated_deltanet_heads_at_128():
    m = GatedDeltaNet(GatedDeltaNetConfig(), 128, 8)  # MAD-Lab: 4 heads of 32, values 2 x 32
    assert (m.n_heads, m.dk, m.dv) == (4, 32, 64)
    log_g = -m.A_log.exp() * torch.nn.functional.softplus(m.dt_bias)
    assert (log_g < 0).all()  # every decay in (0, 1)


# ----------------------------------------------------------------------------- hand checks


def test_taylor_features_give_the_second_order_expansion_of_exp():
    a, b = torch.randn(2, 5, dtype=torch.float64).unbind(0)
    s = (a @ b) / math.sqrt(5)
    assert taylor_features(a).shape == (1 + 5 + 25,)
    torch.testing.assert_close(taylor_features(a) @ taylor_features(b), 1 + s + s**2 / 2)


def test_based_is_normalised_taylor_attention():
    torch.manual_seed(0)
    m = Based(BasedConfig(feature_dim=4, n_heads=1), 8, 8)
    x = torch.randn(1, 3, 8)
    q, k, v = m.q_proj(x)[0], m.k_proj(x)[0], m.v_proj(x)[0]
    s = (q @ k.T) / 2.0  # sqrt(feature_dim)
    w = (1 + s + s**2 / 2).tril()
    expected = m.o_proj((w / w.sum(1, keepdim=True)) @ v)
    torch.testing.assert_close(m(x)[0], expected, rtol=1e-5, atol=1e-6)


def test_sliding_window_attention_is_windowed_attention():
    torch.manual_seed(0)
    swa = SlidingWindowAttention(SlidingWindowAttentionConfig(window=4), 64, 32)
    att = Attention(AttentionConfig(n_heads=1, window=4), 64, 32)
    att.load_state_dict(swa.state_dict())
    x = torch.randn(2, 20, 64)
    torch.testing.assert_close(swa(x), att(x))
    assert swa.n_heads == 1 and SlidingWindowAttentionConfig().heads(256) == 4
    one = SlidingWindowAttention(SlidingWindowAttentionConfig(window=1), 8, 8)
    # a window of one: each token attends to itself only
    torch.testing.assert_close(one(x[:, :5, :8]), one.out(one.qkv(x[:, :5, :8])[..., 16:]))


def test_base_conv_hand_checked():
    m = BaseConv(BaseConvConfig(kernel_size=3), 4, 8)
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv.weight[:, 0, 1] = 1.0  # tap on the previous token
        m.conv.bias.zero_()
        m.projection.weight.copy_(torch.eye(4))
        m.projection.bias.fill_(2.0)
    x = torch.randn(1, 5, 4)
    prev = torch.cat([torch.zeros(1, 1, 4), x[:, :-1]], dim=1)
    torch.testing.assert_close(m(x), prev * (x + 2.0) + x)


def test_h3_kernel_is_the_ssm_impulse_response_and_shift_is_a_delay():
    torch.manual_seed(0)
    m = H3(H3Config(d_state=4, head_dim=1), 2, 8)
    dA, CdB = m._discrete()
    x, resp = torch.zeros_like(dA), []
    for t in range(6):  # impulse through x_t = dA x_{t-1} + dB u_t, y = 2 Re(C x)
        x = dA * x + (1.0 if t == 0 else 0.0)
        resp.append(2 * (CdB * x).sum(-1).real)
    torch.testing.assert_close(m._kernel(6), torch.stack(resp, -1))
    with torch.no_grad():
        m.shift_C.zero_()
        m.shift_C[:, 2] = 1.0  # shift SSM reads k two steps back
        m.shift_D.fill_(0.5)
    k = torch.randn(1, 2, 6)
    expected = torch.nn.functional.pad(k, (2, 0))[..., :6] + 0.5 * k
    torch.testing.assert_close(m._shift_keys(k), expected, rtol=1e-5, atol=1e-6)


def test_outer_product_hyena_matches_mad_lab_formula():
    """y[g, j, t] = sum_i x0[g,i,t] (sum_{s<=t} h_g[t-s] v[g,i,s] x1[g,j,s] + D_g v[g,i,t] x1[g,j,t])."""
    torch.manual_seed(0)
    N = 4
    m = Hyena(HyenaConfig(mode="outer-product", head_dim=N, inner_factor=1), 8, 8)
    x = torch.randn(1, 6, 8)
    z = causal_conv1d(m._project(x), m.short_filter.weight, m.short_filter.bias).transpose(1, 2)[0]
    x0, x1, v = (t.view(2, N, 6) for t in z.split(8))
    h, Dg = m.filter(6).T, m.D[0]  # [G, L], [G]
    y = torch.zeros(2, N, 6)
    for t in range(6):
        for s in range(t + 1):
            coef = h[:, t - s] + (Dg if s == t else 0.0)
            y[..., t] += torch.einsum("gi,gi,gj->gj", x0[..., t], v[..., s], x1[..., s]) * coef[:, None]
    expected = m.out_proj(y.reshape(8, 6).T)
    torch.testing.assert_close(m(x)[0], expected, rtol=1e-4, atol=1e-5)
    assert m.filter(6).shape == (6, 2) and m.D.shape == (1, 2)  # one filter per head


def test_hyena_mode_fields_leave_old_spec_hashes_alone():
    # a gated hyena dumps exactly the fields it had before the mode existed (so its spec hash,
    # hence its results-store keys, are unchanged); the outer-product mode dumps both new fields
    dumped = HyenaConfig().model_dump()
    assert set(HyenaConfig.model_fields) - set(dumped) == {"mode", "head_dim"}
    outer = HyenaConfig(mode="outer-product", head_dim=8).model_dump()
    assert outer["mode"] == "outer-product" and outer["head_dim"] == 8
    plain = load_spec({"name": "a", "d_model": 32, "layers": ["hyena"]})
    spec = load_spec({"name": "b", "d_model": 32, "layers": [
        {"type": "hyena", "mode": "outer-product", "head_dim": 8}]})
    assert spec.spec_hash() != plain.spec_hash()
    assert load_spec(spec.model_dump(mode="json")).spec_hash() == spec.spec_hash()


def test_h3_state_follows_the_sequence_length_when_unset():
    assert H3(H3Config(d_state=None), 8, 24).N == 24 and H3(H3Config(d_state=None), 8, 23).N == 24
    assert H3(H3Config(), 8, 24).N == 64


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="d_state"):
        H3Config(d_state=5).check(32)
    with pytest.raises(ValueError, match="head_dim"):
        H3Config(head_dim=3).check(32)
    with pytest.raises(ValueError, match="num_heads"):
        HyenaConfig(mode="outer-product", num_heads=2).check(32)
    with pytest.raises(ValueError, match="order"):
        HyenaConfig(mode="outer-product", order=3).check(32)
    with pytest.raises(ValueError, match="n_heads"):
        BasedConfig(n_heads=3).check(32)
    with pytest.raises(ValueError, match="expand_v"):
        GatedDeltaNetConfig(expand_v=0.3).check(32)


@pytest.mark.parametrize("name", ["based", "gated-deltanet", "h3", "base-conv", "mh-hyena",
                                  "sliding-window-attention"])
def test_shipped_specs_load_and_run(name):
    spec = load_spec(f"architectures/{name}.yaml")
    from mad_bench import build_model

    model = build_model(spec, vocab_size=11, max_len=16)
    assert model(torch.randint(0, 11, (1, 16))).shape == (1, 16, 11)
