"""Mamba-1's selective scan. Used by mamba.

Torch reference: :mod:`.reference` (the chunked two-level scan; ``chunk_size`` is its chunk).
Triton: :mod:`.triton` (chunks of its own length scanned in registers, bias + softplus, ``D``
and the ``silu(z)`` gate fused; B, C shared across channels, no initial / last state).

Dispatch under ``impl: auto``: Triton on CUDA where it applies (shared B, C; no initial or last
state), the reference otherwise. Measured on an H200 (B 128, L 128-1024, D 128 -> E 256, N 16,
bf16, fwd+bwd, 2026-11-30): 2.95 / 5.90 / 12.8 / 25.8 ms, 0.31-0.36x the eager torch reference
(torch.compile and a mamba CUDA kernel not in that run).
"""
from __future__ import annotations

from ..dispatch import use_triton
from .reference import chunked_scan, selective_scan_naive
from .reference import selective_scan as selective_scan_torch
from .triton import selective_scan_triton

HAS_TRITON = True

__all__ = ["selective_scan", "chunked_scan", "selective_scan_naive", "HAS_TRITON"]


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None, chunk_size: int = 32,
                   impl: str = "auto"):
    """Selective scan ``y[b, d, l]`` (mamba's ``selective_scan_fn`` convention; shapes and
    recurrence in :func:`.reference.selective_scan`); ``impl`` in ``auto|triton|torch``."""
    fits = B.dim() == 3 and C.dim() == 3 and not return_last_state and initial_state is None
    if use_triton(impl, u, auto=fits):
        if not fits:
            raise ValueError("impl='triton': the Triton selective scan takes B, C shared across "
                             "channels ([b, n, l]) and no initial_state / return_last_state")
        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                return_last_state, initial_state, chunk_size)
