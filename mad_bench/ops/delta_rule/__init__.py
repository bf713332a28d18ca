"""The delta rule (DeltaNet). Used by deltanet.

Torch reference: :func:`.reference.chunk_delta_rule` (chunked WY / UT form; ``chunk_size`` is its
chunk). Triton: :mod:`.triton`, the sequential recurrence with the state in registers (no
chunking; ``chunk_size`` does not apply to it; the result is the same up to rounding): the
value columns of the delta rule evolve independently, so they split across programs with no
communication. The chunked WY / UT form on tensor cores exists only in the reference.

``impl: auto``: Triton on CUDA (BENCHMARKS.md: timings against the reference and fla, and what
is still to measure).
"""
from __future__ import annotations

from ..dispatch import use_triton
from . import reference
from .triton import delta_rule_triton

HAS_TRITON = True

__all__ = ["chunk_delta_rule", "HAS_TRITON"]


def chunk_delta_rule(q, k, v, beta, scale: float | None = None, initial_state=None,
                     output_final_state: bool = False, chunk_size: int = 64, impl: str = "auto"):
    """Delta rule over ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, ``beta [B, H, L]``.

    ``scale`` defaults to ``K ** -0.5`` (fla's convention). Returns ``o [B, H, L, V]`` in v's
    dtype, and with ``output_final_state`` also ``(o, S_L [B, H, K, V] fp32)``.
    ``initial_state [B, H, K, V]`` (optional) gets a gradient too.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if use_triton(impl, q):
        return delta_rule_triton(q, k, v, beta, scale, initial_state, output_final_state)
    return reference.chunk_delta_rule(q, k, v, beta, scale=scale, chunk_size=chunk_size,
                                      initial_state=initial_state,
                                      output_final_state=output_final_state)
