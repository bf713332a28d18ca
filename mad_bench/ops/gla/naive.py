"""Gated linear attention (per-key gate), retention / simple GLA (one gate per head and step)
and plain causal linear attention, step by step: the oracle for the chunked references and the
Triton kernel. Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_gla", "naive_simple_gla"]


def naive_gla(q, k, v, log_g, scale=None, initial_state=None, output_final_state=False):
    """``S_t = diag(exp(log_g_t)) S_{t-1} + k_t v_t^T``, ``o_t = S_t^T (scale q_t)`` with
    ``log_g [B, H, L, K]``. Arguments and returns as :func:`mad_bench.ops.gla.chunk_gla`
    (no chunking): ``o`` in v's dtype, the final state in the compute dtype."""
    return _loop(q, k, v, log_g, scale, initial_state, output_final_state)


def naive_simple_gla(q, k, v, log_g=None, scale=None, initial_state=None,
                     output_final_state=False):
    """``S_t = exp(log_g_t) S_{t-1} + k_t v_t^T`` with one gate per head and step
    (``log_g [B, H, L]``; None: no decay), ``o_t = S_t^T (scale q_t)``. Arguments and returns
    as :func:`mad_bench.ops.gla.chunk_simple_gla` (no chunking)."""
    return _loop(q, k, v, None if log_g is None else log_g[..., None], scale, initial_state,
                 output_final_state)


def _loop(q, k, v, log_g, scale, initial_state, output_final_state):
    B, H, L, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    out_dtype, dt = v.dtype, torch.promote_types(v.dtype, torch.float32)
    q, k, v = (t.to(dt) for t in (q, k, v))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(L):
        if log_g is not None:  # [B, H, K] per key, or [B, H, 1] per head
            S = torch.exp(log_g[:, :, t].to(dt))[..., None] * S
        S = S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", scale * q[:, :, t], S))
    o = torch.stack(outs, dim=2).to(out_dtype)
    return (o, S) if output_final_state else o
