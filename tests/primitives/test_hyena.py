"""Hyena: implicit long convolutions gated by projections; the gated mode (Hyena) and the
outer-product mode (MAD-Lab's multi-head hyena)."""
from __future__ import annotations

import torch

from mad_bench import load_spec
from mad_bench.ops.causal_conv import causal_conv1d
from mad_bench.primitives.sequence.hyena import Hyena, HyenaConfig, fft_causal_conv

from primitive_checks import GenericChecks, add_noise

D, L, MAX = 32, 17, 24

CASES = {
    "hyena": lambda: Hyena(HyenaConfig(), D, MAX),
    "hyena-o3-h4": lambda: Hyena(HyenaConfig(order=3, num_heads=4, filter_order=8, emb_dim=5,
                                             proj_groups=1), D, MAX),
    "mh-hyena": lambda: Hyena(HyenaConfig(mode="outer-product", head_dim=8, inner_factor=1,
                                          filter_order=2), D, MAX),
    "mh-hyena-nobias": lambda: Hyena(HyenaConfig(mode="outer-product", head_dim=4, bias=False,
                                                 proj_groups=1), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=3, init=add_noise(0.3), causal=True,
                       shipped_spec="mh-hyena")


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
