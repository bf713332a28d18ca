"""Mamba-2's SSD scan (state-space duality). Used by mamba2.

Torch reference: :func:`.reference.ssd_chunked` (the chunked block decomposition; ``chunk_size``
is its chunk). Triton: the retention kernels of :mod:`mad_bench.ops.gla` (``q = C``, ``k = B``,
``v = dt x``, ``log_g = dt A``), which pick their own block (``block_size`` overrides it); the
chunking changes only speed and rounding. SSD is retention with these inputs, so it shares that
kernel rather than having its own.

``impl: auto``: Triton on CUDA, as for ``chunk_simple_gla`` (BENCHMARKS.md: timings, and what
is still to measure).
"""
from __future__ import annotations

from ..dispatch import use_triton
from .reference import ssd_chunked
from .triton import ssd_triton

HAS_TRITON = True

__all__ = ["ssd", "HAS_TRITON"]


def ssd(x, dt, A, B, C, initial_state=None, output_final_state=False, chunk_size: int = 64,
        impl: str = "auto", block_size: int | None = None):
    """SSD scan: ``x [b, l, h, p]``, ``dt [b, l, h]`` (> 0), ``A [h]`` (< 0),
    ``B, C [b, l, g, n]`` (g divides h), ``initial_state [b, h, p, n]``;
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t`` (no D term).

    Returns ``y [b, l, h, p]`` in ``x``'s dtype, and ``h_L [b, h, p, n]`` (fp32; fp64 for fp64
    inputs on the torch path) when ``output_final_state``.
    """
    h, g = x.shape[2], B.shape[2]
    if h % g:
        raise ValueError(f"groups {g} must divide heads {h}")
    if use_triton(impl, x):
        return ssd_triton(x, dt, A, B, C, initial_state, output_final_state, block_size)
    y, hL = ssd_chunked(x, dt, A, B, C, chunk_size, initial_state)
    return (y, hL) if output_final_state else y
