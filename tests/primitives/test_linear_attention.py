"""Linear attention: softmax replaced by a feature map, optionally normalised (Katharopoulos et al.)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.linear_attention import LinearAttention, LinearAttentionConfig

from primitive_checks import GenericChecks, max_rel_err, redraw

D, L, B = 32, 17, 2

CASES = {
    "linear-attention": lambda: LinearAttention(LinearAttentionConfig(), D, 64),
    "linear-attention-h4-hadamard-chunk8": lambda: LinearAttention(LinearAttentionConfig(
        n_heads=4, feature_map="hadamard", chunk_size=8), D, 64),
    "linear-attention-h2-unnormalised-relu": lambda: LinearAttention(LinearAttentionConfig(
        n_heads=2, normalize=False, feature_map="relu"), D, 64),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, init=redraw, err=max_rel_err, flops=True)


def test_linear_attention_by_hand():
    # one head, identity projections, elu+1 feature map on positive inputs: phi(x) = x + 1
    cfg = LinearAttentionConfig(n_heads=1, eps=1e-9)
    m = LinearAttention(cfg, 2, 8)
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
