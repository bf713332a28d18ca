"""Chunked (gated) causal linear attention: plain linear attention, retention / simple GLA
(one decay per head and step) and GLA (per-key decay). Used by linear-attention, retnet, gla
(and, through :mod:`mad_bench.ops.ssd`, mamba2).

Torch reference: :mod:`.reference` (chunked, exact; ``chunk_size`` / ``sub_chunk_size`` are its
chunking). Triton: :mod:`.triton` for no decay / scalar decay (one program per sequence walks its
chunks; block ``min(64, L)``): MAD's heads are small, so a whole sequence fits one program
with its state in registers, one launch forward and one backward. :mod:`.two_level` for per-key
decay (chunk_gla: a sequential state pass over chunks of 64, then every chunk in parallel with
16-row sub-blocks on tensor cores; four launches for forward + backward): per-key scores are
built pairwise, which left one program per sequence behind fla on long sequences.
``block_size`` overrides the Triton chunk. The chunking changes only speed and rounding, never
the result.

``impl: auto``: Triton on CUDA for every form (BENCHMARKS.md: timings against eager torch,
torch.compile and fla, and what is still to measure).
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from . import reference
from .triton import chunked_linear_attention

HAS_TRITON = True

__all__ = ["chunk_simple_gla", "chunk_gla", "HAS_TRITON"]


def _check(q, k, v, log_g, initial_state, per_key: bool):
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k [B, H, L, K] and v [B, H, L, V], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if log_g is not None:
        want = tuple(q.shape) if per_key else tuple(q.shape[:3])
        if tuple(log_g.shape) != want:
            raise ValueError(f"log_g must be {list(want)}, got {tuple(log_g.shape)}")
    if initial_state is not None:
        want = (*q.shape[:2], q.shape[-1], v.shape[-1])
        if tuple(initial_state.shape) != want:
            raise ValueError(f"initial_state must be {list(want)}, got {tuple(initial_state.shape)}")


def chunk_simple_gla(q, k, v, log_g=None, scale=None, initial_state=None,
                     output_final_state=False, chunk_size: int = 64, impl: str = "auto",
                     block_size: int | None = None):
    """Causal linear attention with an optional scalar decay per head and step.

    Args:
        q, k: ``[B, H, L, K]``; v: ``[B, H, L, V]`` (fp32 / bf16 / fp16 on Triton).
        log_g: ``[B, H, L]`` log forget gate (``<= 0``; an expanded view is fine), or None for
            plain (unnormalised) linear attention. Fixed per-head values give RetNet.
        scale: multiplies ``q`` (None: ``K ** -0.5``).
        initial_state: ``[B, H, K, V]`` or None.
        output_final_state: also return the state after the last step (fp32).
        chunk_size: the torch reference's chunk length.
        impl: ``auto | triton | torch`` (see the module docstring and
            :func:`mad_bench.ops.dispatch.use_triton`).
        block_size: the Triton kernel's chunk (power of two >= 16; None: its heuristic).

    Returns:
        ``o [B, H, L, V]`` in ``v``'s dtype, or ``(o, S_L)`` when ``output_final_state``.
    """
    _check(q, k, v, log_g, initial_state, per_key=False)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if use_triton(impl, q):
        return chunked_linear_attention(q, k, v, log_g, scale, initial_state, output_final_state,
                                        block_size)
    return reference.chunk_simple_gla(q, k, v, log_g, scale=scale, chunk_size=chunk_size,
                                      initial_state=initial_state,
                                      output_final_state=output_final_state)


def chunk_gla(q, k, v, log_g, scale=None, initial_state=None, output_final_state=False,
              chunk_size: int = 64, sub_chunk_size: int = 16, impl: str = "auto",
              block_size: int | None = None):
    """Gated linear attention with per-key decay ``log_g [B, H, L, K]`` (``<= 0``).

    Same arguments and returns as :func:`chunk_simple_gla` (``log_g`` required);
    ``sub_chunk_size`` is the torch reference's secondary chunking. Stable for any decay
    strength (pairwise intra-chunk scores, all other exponents ``<= 0``).
    """
    if log_g is None:
        raise ValueError("chunk_gla needs log_g [B, H, L, K]; use chunk_simple_gla for no decay")
    _check(q, k, v, log_g, initial_state, per_key=True)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if use_triton(impl, q):
        return chunked_linear_attention(q, k, v, log_g, scale, initial_state, output_final_state,
                                        block_size)
    return reference.chunk_gla(q, k, v, log_g, scale=scale, chunk_size=chunk_size,
                               sub_chunk_size=sub_chunk_size, initial_state=initial_state,
                               output_final_state=output_final_state)
