"""The gated delta rule (Gated DeltaNet) step by step: the oracle for the chunked reference and
the Triton kernel. Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_gated_delta_rule"]


def naive_gated_delta_rule(q, k, v, beta, log_g, scale: float | None = None, initial_state=None,
                           output_final_state: bool = False):
    """``S' = exp(log_g_t) S_{t-1}``, ``S_t = S' + beta_t k_t (v_t - S'^T k_t)^T``,
    ``o_t = S_t^T (scale q_t)``.

    Arguments and returns as :func:`mad_bench.ops.gated_delta_rule.gated_delta_rule` (no
    chunking): ``o`` in v's dtype, the final state in the compute dtype."""
    B, H, L, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else float(scale)
    out_dtype, dt = v.dtype, torch.promote_types(v.dtype, torch.float32)
    q, k, v, beta, log_g = (t.to(dt) for t in (q, k, v, beta, log_g))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(L):
        k_t = k[:, :, t]
        S = torch.exp(log_g[:, :, t])[..., None, None] * S
        recalled = torch.einsum("bhk,bhkv->bhv", k_t, S)
        write = beta[:, :, t, None] * (v[:, :, t] - recalled)
        S = S + k_t[..., :, None] * write[..., None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", scale * q[:, :, t], S))
    o = torch.stack(outs, dim=2).to(out_dtype)
    return (o, S) if output_final_state else o
