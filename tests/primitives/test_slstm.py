"""sLSTM (xLSTM): a scalar memory with exponential gating and a head-wise recurrent matrix."""
from __future__ import annotations

import math

import pytest
import torch

from mad_bench.ops.slstm import slstm_cell
from mad_bench.primitives.sequence.slstm import SLSTM, SLSTMConfig

from primitive_checks import GenericChecks, add_fan_in_noise, max_rel_err

D_MODEL, L = 32, 17

CASES = {
    "slstm": lambda: SLSTM(SLSTMConfig(), D_MODEL, 64),
}
CHECKS = GenericChecks(d_model=D_MODEL, seq_len=L, step_batch=3, init=add_fan_in_noise(0.5),
                       err=max_rel_err, flops=True)


def test_slstm_cell_by_hand():
    # R = 0, gates i~ = 0, f~ = 0 (f = 1/2), o~ = 0 (o = 1/2), z~ = atanh(0.6), atanh(0.2)
    # c_1 = .6, n_1 = 1, h_1 = .3 ; c_2 = .3 + .2 = .5, n_2 = 1.5, h_2 = .5 * .5 / 1.5
    R = torch.zeros(1, 1, 4)
    state = tuple(torch.zeros(1, 1, 1) for _ in range(3)) + (torch.full((1, 1, 1), -math.inf),)
    hs = []
    for zt in (0.6, 0.2):
        wx = torch.tensor([0.0, 0.0, math.atanh(zt), 0.0]).view(1, 1, 4)
        state = slstm_cell(wx, R, state)
        hs.append(state[0].item())
    assert hs == pytest.approx([0.3, 0.5 * 0.5 / 1.5], rel=1e-6)


def test_slstm_forward_matches_naive():
    torch.manual_seed(0)
    m = SLSTM(SLSTMConfig(), D_MODEL, 64)
    x = torch.randn(2, L, D_MODEL)
    H, dh = m.n_heads, m.head_dim
    with torch.no_grad():
        wx = m.W(x).double().view(2, L, H, 4 * dh)
        R = m.R.double()
        h = c = n = torch.zeros(2, H, dh, dtype=torch.float64)
        hs = []
        for t in range(L):  # unstabilised recurrence
            pre = wx[:, t] + torch.einsum("bhd,hde->bhe", h, R)
            i, f, z, o = pre.chunk(4, -1)
            c = torch.sigmoid(f) * c + i.exp() * z.tanh()
            n = torch.sigmoid(f) * n + i.exp()
            h = torch.sigmoid(o) * c / n
            hs.append(h)
        hh = torch.stack(hs, 1)
        var = hh.var(-1, keepdim=True, unbiased=False)
        hh = (hh - hh.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-6)
        ref = m.out((hh.flatten(-2) * m.norm_weight.double()).float())
        assert max_rel_err(m(x), ref) <= 1e-5
