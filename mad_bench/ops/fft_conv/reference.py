"""The long causal convolution by FFT of size 2L (Hyena, H3, BaseConv's filters), in torch.

Forward ``y = irfft(rfft(u) rfft(k))[:L]``; backward by the same transforms (the adjoint of a
causal convolution is the correlation with the same filter):
``du = irfft(rfft(g) conj(rfft(k)))[:L]``, ``dk = irfft(rfft(g) conj(rfft(u)))[:L]`` summed over
the dims ``k`` was broadcast along. Zero padding to 2L makes the circular transforms exact.
"""
from __future__ import annotations

import torch

from ..utils import upcast

__all__ = ["fft_conv_fwd", "fft_conv_bwd"]


def _spectrum(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.rfft(upcast(x), n=n)


def fft_conv_fwd(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    L = u.shape[-1]
    n = 2 * L
    # contiguous (not the slice's strides): the custom op's fake promises a fresh tensor
    return torch.fft.irfft(_spectrum(u, n) * _spectrum(k, n), n=n)[..., :L].to(u.dtype).contiguous()


def fft_conv_bwd(u: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    L = u.shape[-1]
    n = 2 * L
    G = _spectrum(g, n)
    du = torch.fft.irfft(G * _spectrum(k, n).conj(), n=n)[..., :L]
    dk = torch.fft.irfft(G * _spectrum(u, n).conj(), n=n)[..., :L]
    return (du.sum_to_size(u.shape).to(u.dtype).contiguous(), dk.sum_to_size(k.shape).to(k.dtype).contiguous())
