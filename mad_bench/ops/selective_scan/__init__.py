"""Mamba-1's selective scan. Used by mamba.

Torch reference: :mod:`.reference` (the chunked two-level scan; ``chunk_size`` is its chunk).
Triton: :mod:`.triton` (one launch per direction: [T, channel-block] tiles scanned in
registers, every input read once and y written once; bias + softplus, ``D`` and the ``silu(z)``
gate fused; B, C shared across channels, no initial / last state; per-member ``A``, ``D``,
``delta_bias`` with a leading member dim, so the engine's vmap folds all members into one
launch).

Dispatch under ``impl: auto``: Triton on CUDA where it applies (shared B, C; no initial or last
state), the reference otherwise. HBM floor (every input read and every output written once,
forward and backward, bf16, N 4, at 4.8 TB/s): 0.056 ms forward, 0.155 ms forward+backward at
(B, L, D) = (128, 1024, 128) (E 256); the previous kernel (chunked [channels, N, T] tiles with
atomics) took 25.5 ms there (N 16, H200, 2026-12-03). ``benchmarks/scan_check.py`` measures this
one against the floor and checks it at the real shapes.
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
