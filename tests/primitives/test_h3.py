"""H3: a shift SSM on the keys and a diagonal SSM over k v^T, read out by the queries (Zoology)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.h3 import H3, H3Config

from primitive_checks import GenericChecks

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "h3": lambda: H3(H3Config(), D, MAX),
    "h3-hd2-n8": lambda: H3(H3Config(head_dim=2, d_state=8), D, MAX),
    "h3-state-is-seq-len": lambda: H3(H3Config(head_dim=4, d_state=None), D, 23),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, eval=True, registered="h3", shipped_spec="h3")


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


def test_h3_state_follows_the_sequence_length_when_unset():
    assert H3(H3Config(d_state=None), 8, 24).N == 24 and H3(H3Config(d_state=None), 8, 23).N == 24
    assert H3(H3Config(), 8, 24).N == 64
