"""Torch reference of the short causal depthwise convolution (the one used by mamba, mamba2,
mlstm, deltanet, short-conv and hyena), its parallel form and its one-step form."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_conv1d", "causal_conv1d_step"]


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  silu: bool = False) -> torch.Tensor:
    """``y[b, t, c] = bias[c] + sum_j w[c, j] x[b, t - (K - 1) + j, c]`` (zeros before t = 0),
    then ``silu`` if asked. ``x [B, L, C]``, ``weight [C, 1, K]`` (``nn.Conv1d``'s) or ``[C, K]``."""
    L, C = x.shape[1], x.shape[2]
    w = weight.reshape(C, 1, -1)
    # autocast's cast by hand: under vmap (the ensemble engine) the batched conv1d receives
    # autocast-cast and uncast operands mixed (a bf16 input, an fp32 bias) and rejects them
    dt = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        y = F.conv1d(x.to(dt).transpose(1, 2), w.to(dt), None if bias is None else bias.to(dt),
                     padding=w.shape[-1] - 1, groups=C)
    y = y[..., :L].transpose(1, 2)
    return F.silu(y) if silu else y


def causal_conv1d_step(x_t: torch.Tensor, cache: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of :func:`causal_conv1d` (no activation): ``x_t [B, C]``, ``cache [B, C, W]`` the
    last ``W >= K - 1`` inputs. Returns ``(y_t [B, C], new cache)`` (same width, oldest dropped)."""
    C = x_t.shape[-1]
    w = weight.reshape(C, -1)
    window = torch.cat((cache, x_t[..., None].to(cache.dtype)), dim=-1)  # [B, C, W + 1]
    y = (window[..., -w.shape[-1]:].to(x_t.dtype) * w).sum(-1)
    if bias is not None:
        y = y + bias
    return y, window[..., 1:]
