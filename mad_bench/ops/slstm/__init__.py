"""xLSTM's sLSTM time loop (scalar memory, exponential gating, block-diagonal recurrence). Used
by slstm.

Torch reference: :mod:`.reference` (one batched matmul per step over :func:`slstm_cell`).
Triton: :mod:`.triton` (the whole loop in one kernel per (batch, head), state in registers):
the recurrence is sequential in time, so the kernel's point is one launch for the whole loop
instead of a few per step; ``R`` may carry a leading member dim, so the engine's vmap folds all
members into one launch.

``impl: auto``: Triton on CUDA (BENCHMARKS.md: timings, and what is still to measure).
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import slstm_cell, slstm_scan_ref
from .triton import slstm_scan_triton

HAS_TRITON = True

__all__ = ["slstm_scan", "slstm_cell", "HAS_TRITON"]


def slstm_scan(wx: torch.Tensor, R: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """The sLSTM time loop: ``wx [B, L, H, 4 d_h]`` (gate blocks i, f, z, o: ``W x_t + b``),
    ``R [H, d_h, 4 d_h]`` -> ``h [B, L, H, d_h]`` in wx's dtype (fp32 math), from the zero state
    (``m = -inf``). Gradients for wx and R."""
    if use_triton(impl, wx):
        return slstm_scan_triton(wx, R)
    return slstm_scan_ref(wx, R)
