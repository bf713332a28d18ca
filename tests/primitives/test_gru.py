"""GRU: torch's nn.GRU as a sequence mixer (with an optional output projection)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.gru import GRU, GRUConfig

from primitive_checks import GenericChecks, add_noise

D, L, MAX = 32, 17, 24

CASES = {"gru": lambda: GRU(GRUConfig(), D, MAX)}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=3, init=add_noise(0.3), causal=True)


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
