"""Mamba-1's selective scan. Used by mamba.

Torch reference: :mod:`.reference` (the chunked two-level scan; ``chunk_size`` is its chunk).
Triton: :mod:`.triton` (one launch per direction: [T, channel-block] tiles scanned in
registers, every input read once and y written once; bias + softplus, ``D`` and the ``silu(z)``
gate fused; B, C shared across channels, no initial / last state; per-member ``A``, ``D``,
``delta_bias`` with a leading member dim, so the engine's vmap folds all members into one
launch). The scan is memory-bound, so the kernel is built to approach the HBM floor (every
input read and every output written once); ``benchmarks/scan_check.py`` measures it against
that floor and checks it at the model's real shapes (BENCHMARKS.md, kernels).

``impl: auto``: Triton on CUDA where it applies (shared B, C; no initial or last state), the
reference otherwise.
"""
from __future__ import annotations

import torch

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
    recurrence in :func:`.reference.selective_scan`); ``impl`` in ``auto|triton|torch``.

    Per-member parameters: ``A[G, d, n]``, ``D[G, d]``, ``delta_bias[G, d]`` give batch rows
    ``g * b / G ... (g + 1) * b / G`` member g's parameters (the Triton kernels take them in
    one launch; the torch path runs one reference call per member)."""
    fits = B.dim() == 3 and C.dim() == 3 and not return_last_state and initial_state is None
    if use_triton(impl, u, auto=fits):
        if not fits:
            raise ValueError("impl='triton': the Triton selective scan takes B, C shared across "
                             "channels ([b, n, l]) and no initial_state / return_last_state")
        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    members = [p.shape[0] for p, nd in ((A, 3), (D, 2), (delta_bias, 2)) if p is not None and p.dim() == nd]
    if members:
        G = members[0]
        if any(m != G for m in members) or u.shape[0] % G:
            raise ValueError(f"per-member A / D / delta_bias must share one member count dividing the "
                             f"batch {u.shape[0]}; got leading dims {members}")
        r = u.shape[0] // G

        def rows(t, g):
            return None if t is None else t[g * r:(g + 1) * r]

        def par(p, g, nd):
            return p[g] if p is not None and p.dim() == nd else p

        outs = [selective_scan_torch(rows(u, g), rows(delta, g), par(A, g, 3), rows(B, g), rows(C, g),
                                     par(D, g, 2), rows(z, g), par(delta_bias, g, 2), delta_softplus,
                                     return_last_state, rows(initial_state, g), chunk_size)
                for g in range(G)]
        if return_last_state:
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        return torch.cat(outs)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                return_last_state, initial_state, chunk_size)
