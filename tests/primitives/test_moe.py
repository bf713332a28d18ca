"""MoE: a channel mixer routing each token to its top-k experts (dense or sparse dispatch)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.primitives.channel.moe import MoE, MoEConfig

from primitive_checks import l2_rel_err


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
    assert l2_rel_err(y_step, y) < 1e-5


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
