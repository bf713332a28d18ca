"""RWKV-6's WKV step by step: the oracle for the chunked reference and the Triton kernel.
Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_wkv6"]


def naive_wkv6(r, k, v, logw, u):
    """``o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)``, ``S_t = diag(exp(logw_t)) S_{t-1} +
    k_t^T v_t`` from the zero state. Arguments and returns as :func:`mad_bench.ops.rwkv6.wkv6`
    (no chunking): ``o [B, H, L, V]`` in v's dtype."""
    B, H, L, K = r.shape
    V = v.shape[-1]
    out_dtype, dt = v.dtype, torch.promote_types(v.dtype, torch.float32)
    r, k, v, logw, u = (t.to(dt) for t in (r, k, v, logw, u))
    S = r.new_zeros(B, H, K, V)
    outs = []
    for t in range(L):
        kv = k[:, :, t, :, None] * v[:, :, t, None, :]  # [B, H, K, V]
        outs.append(torch.einsum("bhk,bhkv->bhv", r[:, :, t], S + u[None, :, :, None] * kv))
        S = torch.exp(logw[:, :, t])[..., None] * S + kv
    return torch.stack(outs, dim=2).to(out_dtype)
