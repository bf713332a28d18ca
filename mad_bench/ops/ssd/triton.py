"""Mamba-2's SSD on the chunked linear-attention kernels (:mod:`mad_bench.ops.gla.triton`).

``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t`` is retention with ``q = C``,
``k = B``, ``v = dt x``, ``log_g = dt A``, ``scale = 1`` (the state transposed: ``[n, p]``).
"""
from __future__ import annotations

from ..gla.triton import chunked_linear_attention

__all__ = ["ssd_triton"]


def ssd_triton(x, dt, A, B, C, initial_state=None, output_final_state=False, block_size=None):
    """Arguments and returns as :func:`mad_bench.ops.ssd.ssd` (Triton path)."""
    b, l, h, p = x.shape
    g = B.shape[2]

    def heads(t):  # [b, l, g, n] -> [b, h, l, n] (a stride-0 view when g == 1)
        t = t.transpose(1, 2)
        return t.expand(b, h, l, t.shape[-1]) if g == 1 else t.repeat_interleave(h // g, dim=1)

    v = (x * dt[..., None]).to(x.dtype).transpose(1, 2)  # bf16 x (autocast): keep 16-bit I/O
    log_g = (dt * A).transpose(1, 2)
    h0 = initial_state.transpose(-1, -2) if initial_state is not None else None
    out = chunked_linear_attention(heads(C), heads(B), v, log_g, 1.0, h0, output_final_state,
                                   block_size)
    y, hL = out if output_final_state else (out, None)
    y = y.transpose(1, 2).to(x.dtype)
    return (y, hL.transpose(-1, -2)) if output_final_state else y
