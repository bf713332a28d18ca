"""LSTM: torch's nn.LSTM as a sequence mixer (with an optional output projection)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.lstm import LSTM, LSTMConfig

from primitive_checks import GenericChecks, add_noise

D, L, MAX = 32, 17, 24

CASES = {"lstm": lambda: LSTM(LSTMConfig(), D, MAX)}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=3, init=add_noise(0.3), causal=True)


def test_lstm_hand():
    """nn.LSTM matches the textbook equations (the module is what we wrap; check the wiring)."""
    torch.manual_seed(0)
    m = LSTM(LSTMConfig(out_proj=False), 3, 8)
    x = torch.randn(1, 4, 3)
    Wi, Wh = m.rnn.weight_ih_l0, m.rnn.weight_hh_l0
    b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0
    h = c = torch.zeros(3)
    ys = []
    for t in range(4):
        i, f, g, o = (Wi @ x[0, t] + Wh @ h + b).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(ys), atol=1e-6, rtol=1e-5)
