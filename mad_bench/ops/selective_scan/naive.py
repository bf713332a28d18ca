"""Mamba-1's selective scan step by step: the oracle for the chunked reference and the Triton
kernel. Computes in the inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["naive_selective_scan"]


def naive_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False, return_last_state=False, initial_state=None):
    """``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t``, ``y_t = C_t . h_t + D u_t``, then
    ``y * silu(z)``; ``delta <- softplus(delta + delta_bias)`` when asked. Arguments and returns
    as :func:`mad_bench.ops.selective_scan.selective_scan` (no chunking): ``B, C [b, n, l]``
    shared or ``[b, g, n, l]`` per group; ``y`` in u's dtype, the last state in the compute
    dtype."""
    b, d, L = u.shape
    dt = torch.promote_types(u.dtype, torch.float32)
    uf, dl, A = u.to(dt), delta.to(dt), A.to(dt)
    if delta_bias is not None:
        dl = dl + delta_bias.to(dt)[:, None]
    if delta_softplus:
        dl = F.softplus(dl)

    def per_channel(M):  # -> [b, d, n, l]
        M = M.to(dt)
        if M.dim() == 3:
            return M[:, None].expand(b, d, *M.shape[1:])
        return M.repeat_interleave(d // M.shape[1], dim=1)

    B, C = per_channel(B), per_channel(C)
    h = (torch.zeros(b, d, A.shape[1], dtype=dt, device=u.device) if initial_state is None
         else initial_state.to(dt))
    ys = []
    for t in range(L):
        x_t = (dl[:, :, t] * uf[:, :, t])[..., None] * B[..., t]
        h = torch.exp(dl[:, :, t, None] * A) * h + x_t
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D.to(dt)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(dt))
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y
