"""xLSTM's mLSTM (chunked, stabilised matrix memory). Used by mlstm.

Torch reference: :func:`.reference.mlstm_chunked`. Triton: :mod:`.triton` (one program per
sequence walks its chunks, the state in registers, as for :mod:`mad_bench.ops.gla`).
``chunk_size`` means the same on both paths: the chunk length, capped at the sequence (the torch
form uses ``min(chunk_size, L)``, the kernel ``min(chunk_size, max(16, next_pow2(L)))``); the
kernel needs a power of two >= 16 (``tl.dot``'s tiles), so any other ``chunk_size`` runs the
reference under ``impl: auto`` (and is an error under ``impl: triton``).

``impl: auto``: Triton on CUDA for a valid ``chunk_size`` (BENCHMARKS.md: timings, and what is
still to measure).
"""
from __future__ import annotations

import torch

from ..dispatch import next_pow2, use_triton
from .reference import mlstm_chunked
from .triton import mlstm_triton, valid_block

HAS_TRITON = True

__all__ = ["mlstm", "mlstm_chunked", "valid_block", "HAS_TRITON"]


def _check(q, k, v, i_gate, log_f, initial_state):
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k [B, H, L, K] and v [B, H, L, V], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    for name, g in (("i_gate", i_gate), ("log_f", log_f)):
        if tuple(g.shape) != tuple(q.shape[:3]):
            raise ValueError(f"{name} must be {list(q.shape[:3])}, got {tuple(g.shape)}")
    if initial_state is not None:
        B, H, _, K = q.shape
        want = [(B, H, K, v.shape[-1]), (B, H, K), (B, H)]
        got = [tuple(t.shape) for t in initial_state]
        if len(got) != 3 or got != want:
            raise ValueError(f"initial_state must be (C, n, m) of shapes {want}, got {got}")


def mlstm(q, k, v, i_gate, log_f, initial_state=None, output_final_state=False,
          chunk_size: int = 64, impl: str = "auto"):
    """Chunked stabilised mLSTM.

    Args:
        q, k: ``[B, H, L, K]``; v: ``[B, H, L, V]`` (fp32 / bf16 / fp16 on Triton; no scaling
            applied, the mLSTM layer pre-scales ``k`` by ``K ** -0.5``).
        i_gate: ``[B, H, L]`` input-gate pre-activation ``i~`` (exponential gate).
        log_f: ``[B, H, L]`` log forget gate (``logsigmoid(f~)``, ``<= 0``).
        initial_state: ``(C [B, H, K, V], n [B, H, K], m [B, H])`` or None (zeros); ``m``
            gets no gradient.
        output_final_state: also return ``(C, n, m)`` after the last step (fp32).
        chunk_size: the chunk length on both paths (see the module docstring).
        impl: ``auto | triton | torch``.

    Returns:
        ``h [B, H, L, V]`` (``v``'s dtype on Triton, fp32 on torch), or ``(h, (C, n, m))``.
    """
    _check(q, k, v, i_gate, log_f, initial_state)
    if use_triton(impl, q, auto=valid_block(chunk_size)):
        if not valid_block(chunk_size):
            raise ValueError(f"chunk_size={chunk_size}: the Triton mLSTM needs a power of two "
                             f">= 16 (valid: 16, 32, 64, 128, ...)")
        block = min(chunk_size, max(16, next_pow2(q.shape[2])))
        return mlstm_triton(q, k, v, i_gate, log_f, initial_state, output_final_state, block)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    h, st = mlstm_chunked(q, k, v, i_gate, log_f, chunk_size, state=initial_state,
                          compute_dtype=compute)
    return (h, st) if output_final_state else h
