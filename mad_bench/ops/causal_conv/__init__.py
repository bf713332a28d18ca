"""Short causal depthwise convolution over time (mamba, mamba2, mlstm, deltanet, short-conv and
hyena's short filter), optionally followed by ``silu``.

Torch reference: :mod:`.reference` (``F.conv1d`` with left padding; the step form). Triton:
:mod:`.triton` (bias and silu fused; the backward recomputes the pre-activation; per-member
weight and bias with a leading member dim, so the engine's vmap folds all members into one
launch).

``impl: auto`` runs the Triton kernel on CUDA only from ``TRITON_MIN_LEN`` steps, where it
overtakes the torch path (eager or compiled; BENCHMARKS.md, kernels), and the torch reference
otherwise. ``impl: triton`` forces the kernel at any length.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import causal_conv1d_step
from .reference import causal_conv1d as causal_conv1d_torch
from .triton import causal_conv1d_triton

HAS_TRITON = True
TRITON_MIN_LEN = 1024
"""Shortest sequence at which ``impl: auto`` runs the Triton kernel (the measured crossover)."""

__all__ = ["causal_conv1d", "causal_conv1d_step", "HAS_TRITON"]


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None, impl: str = "auto") -> torch.Tensor:
    """Causal depthwise conv of ``x [B, L, C]`` with ``weight [C, 1, K]`` (or ``[C, K]``), an
    optional ``bias [C]`` and ``activation`` None or ``"silu"``; returns ``[B, L, C]``."""
    if activation not in (None, "silu"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    silu = activation == "silu"
    if use_triton(impl, x, auto=x.shape[1] >= TRITON_MIN_LEN):
        return causal_conv1d_triton(x, weight, bias, silu)
    return causal_conv1d_torch(x, weight, bias, silu)
