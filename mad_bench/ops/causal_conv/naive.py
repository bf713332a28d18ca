"""The short causal depthwise convolution written as a loop over time: the oracle that the
``F.conv1d`` reference and the Triton kernel are tested against. Computes in the inputs' dtype
(at least fp32: fp64 stays fp64) and returns ``x``'s dtype."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["naive_causal_conv1d"]


def naive_causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                        activation: str | None = None) -> torch.Tensor:
    """``y[:, t] = bias + sum_j w[:, j] x[:, t - (K - 1) + j]`` (zeros before the start), then
    ``silu`` when ``activation == "silu"``. Arguments as
    :func:`mad_bench.ops.causal_conv.causal_conv1d`."""
    if activation not in (None, "silu"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    dt = torch.promote_types(x.dtype, torch.float32)
    B, L, C = x.shape
    w = weight.reshape(C, -1).to(dt)
    K = w.shape[1]
    xs = x.to(dt)
    ys = []
    for t in range(L):
        y = x.new_zeros(B, C, dtype=dt) if bias is None else bias.to(dt).expand(B, C)
        for j in range(K):
            s = t - (K - 1) + j
            if s >= 0:
                y = y + w[:, j] * xs[:, s]
        ys.append(y)
    y = torch.stack(ys, dim=1)
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)
