"""The long causal convolution as a direct sum over time: the oracle the FFT op is tested
against. Computes in at least fp32 (fp64 stays fp64) and returns ``u``'s dtype."""
from __future__ import annotations

import torch

__all__ = ["naive_fft_causal_conv"]


def naive_fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[..., t] = sum_{s <= t} k[..., t - s] u[..., s]`` (``k`` broadcast against ``u``)."""
    dt = torch.promote_types(torch.promote_types(u.dtype, k.dtype), torch.float32)
    L = u.shape[-1]
    uu, kk = u.to(dt), k.to(dt)
    ys = [sum(kk[..., t - s] * uu[..., s] for s in range(t + 1)) for t in range(L)]
    return torch.stack(ys, -1).to(u.dtype)
