"""BaseConv: a (short or implicit long) convolution gating a linear projection (Zoology)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.base_conv import BaseConv, BaseConvConfig

from primitive_checks import GenericChecks

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "base-conv": lambda: BaseConv(BaseConvConfig(), D, MAX),
    "base-conv-long-act": lambda: BaseConv(BaseConvConfig(conv="long", use_act=True), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, eval=True,
                       registered="base-conv", shipped_spec="base-conv")


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
