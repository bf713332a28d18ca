"""Gated DeltaNet: the delta rule with a data-dependent decay (MAD-Lab's settings)."""
from __future__ import annotations

import torch

from mad_bench.primitives.sequence.gated_deltanet import GatedDeltaNet, GatedDeltaNetConfig

from primitive_checks import GenericChecks

D, L, B, MAX = 32, 17, 2, 24

CASES = {
    "gated-deltanet": lambda: GatedDeltaNet(GatedDeltaNetConfig(), D, MAX),
    "gated-deltanet-h2-plain": lambda: GatedDeltaNet(GatedDeltaNetConfig(
        n_heads=2, head_dim=8, short_conv=False, output_gate=False, chunk_size=4), D, MAX),
}
CHECKS = GenericChecks(d_model=D, seq_len=L, step_batch=B, eval=True,
                       registered="gated-deltanet", shipped_spec="gated-deltanet")


def test_mad_lab_gated_deltanet_heads_at_128():
    m = GatedDeltaNet(GatedDeltaNetConfig(), 128, 8)  # MAD-Lab: 4 heads of 32, values 2 x 32
    assert (m.n_heads, m.dk, m.dv) == (4, 32, 64)
    log_g = -m.A_log.exp() * torch.nn.functional.softplus(m.dt_bias)
    assert (log_g < 0).all()  # every decay in (0, 1)
