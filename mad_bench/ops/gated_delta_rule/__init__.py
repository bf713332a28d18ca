"""Gated delta rule (Gated DeltaNet, Yang et al. 2024): one op, a torch reference and a Triton path.

``gated_delta_rule(q, k, v, beta, log_g, ...)`` makes the one dispatch decision: the Triton
kernels (``triton.py``: the chunked WY form, forward and backward) on CUDA or under
``TRITON_INTERPRET=1`` when asked, the chunked torch form (``reference.py``) otherwise. See ``reference.py`` for the recurrence and its chunked form.
"""
from __future__ import annotations

from ..dispatch import use_triton

from .reference import chunk_gated_delta_rule, recurrent_gated_delta_rule

HAS_TRITON = True

__all__ = ["gated_delta_rule", "chunk_gated_delta_rule", "recurrent_gated_delta_rule", "HAS_TRITON"]


def gated_delta_rule(q, k, v, beta, log_g, scale: float | None = None, initial_state=None,
                     output_final_state: bool = False, chunk_size: int = 64, impl: str = "auto"):
    """Gated delta rule over ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, ``beta, log_g [B, H, L]``.

    ``scale`` defaults to ``K ** -0.5``. Returns ``o [B, H, L, V]`` in v's dtype, and with
    ``output_final_state`` ``(o, S_L [B, H, K, V])``. ``chunk_size`` is the torch path's chunk.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not use_triton(impl, q):
        return chunk_gated_delta_rule(q, k, v, beta, log_g, scale, chunk_size, initial_state,
                                      output_final_state)
    from .triton import gated_delta_rule_triton

    o, s = gated_delta_rule_triton(q, k, v, beta, log_g, scale, initial_state)
    return (o, s) if output_final_state else o
