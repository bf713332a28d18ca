"""Based: linear attention with the second-order Taylor feature map of exp (Zoology)."""
from __future__ import annotations

import math

import torch

from mad_bench.primitives.sequence.based import Based, BasedConfig, taylor_features

from primitive_checks import GenericChecks

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "based": lambda: Based(BasedConfig(), D, MAX),
    "based-h2-f4": lambda: Based(BasedConfig(n_heads=2, feature_dim=4, chunk_size=8), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, eval=True,
                       registered="based", shipped_spec="based")


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
