"""Mamba-2's SSD scan step by step: the oracle for the chunked reference and the Triton path.
Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_ssd"]


def naive_ssd(x, dt, A, B, C, initial_state=None, output_final_state=False):
    """``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t`` (no D term), per head,
    each group's ``B, C`` shared by its heads. Arguments and returns as
    :func:`mad_bench.ops.ssd.ssd` (no chunking): ``y`` in x's dtype, the final state
    ``[b, h, p, n]`` in the compute dtype."""
    b, L, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    if h % g:
        raise ValueError(f"groups {g} must divide heads {h}")
    wd = torch.promote_types(x.dtype, torch.float32)
    xs, dts, A = x.to(wd), dt.to(wd), A.to(wd)
    B, C = (M.to(wd).repeat_interleave(h // g, dim=2) for M in (B, C))  # [b, L, h, n]
    S = (torch.zeros(b, h, p, n, dtype=wd, device=x.device) if initial_state is None
         else initial_state.to(wd))
    ys = []
    for t in range(L):
        d_t = dts[:, t]  # [b, h]
        S = (torch.exp(d_t * A)[..., None, None] * S
             + (d_t[..., None] * xs[:, t])[..., :, None] * B[:, t, :, None, :])
        ys.append(torch.einsum("bhpn,bhn->bhp", S, C[:, t]))
    y = torch.stack(ys, dim=1).to(x.dtype)
    return (y, S) if output_final_state else y
