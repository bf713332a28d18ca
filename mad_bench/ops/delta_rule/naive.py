"""The delta rule (DeltaNet) step by step: the oracle for the chunked WY reference and the
Triton kernel: the gated delta rule's step loop with no decay (every gate exp(0) = 1, exact).
Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

from ..gated_delta_rule.naive import naive_gated_delta_rule

__all__ = ["naive_delta_rule"]


def naive_delta_rule(q, k, v, beta, scale: float | None = None, initial_state=None,
                     output_final_state: bool = False):
    """``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``, ``o_t = S_t^T (scale q_t)``.

    Arguments and returns as :func:`mad_bench.ops.delta_rule.chunk_delta_rule` (no chunking):
    ``o`` in v's dtype, the final state in the compute dtype."""
    log_g = torch.zeros(beta.shape, dtype=beta.dtype, device=beta.device)  # exp(0) = 1: no decay
    return naive_gated_delta_rule(q, k, v, beta, log_g, scale, initial_state, output_final_state)
