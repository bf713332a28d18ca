"""Short conv: a depthwise causal convolution of a few taps between optional projections."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.short_conv import ShortConv, ShortConvConfig

from primitive_checks import GenericChecks, add_noise, run_steps

D, L, MAX = 32, 17, 24

CASES = {
    "short-conv": lambda: ShortConv(ShortConvConfig(), D, MAX),
    "short-conv-noproj": lambda: ShortConv(ShortConvConfig(projections=False, activation="none"), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=3, init=add_noise(0.3), causal=True)


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
