"""The long causal convolution of Hyena, H3 and BaseConv (``y = k * u`` over time, by FFT).

Torch only (:mod:`.reference`: forward and its adjoint by FFT; oracle :mod:`.naive`). It is a
``torch.library`` custom op with its own autograd and batching rule because torch.compile
cannot trace the FFTs under the engine's ``vmap`` (AOT autograd fails with "Cannot access
storage of BatchedTensorImpl", so the compiled step of every Hyena spec ran eagerly): as one
opaque node, the compiled step fuses the work around it. Under vmap the members become one
more leading dim of both arguments (the filter broadcast against the batch): one call.
"""
from __future__ import annotations

import torch

from .reference import fft_conv_bwd, fft_conv_fwd

HAS_TRITON = False

__all__ = ["fft_causal_conv", "HAS_TRITON"]


def _check(u: torch.Tensor, k: torch.Tensor) -> torch.Size:
    if k.dim() > u.dim() or u.shape[-1] != k.shape[-1]:
        raise ValueError(f"fft_causal_conv: k {tuple(k.shape)} must broadcast against u {tuple(u.shape)} "
                         "with the same length (last dim)")
    shape = torch.broadcast_shapes(u.shape, k.shape)
    if shape != u.shape:
        raise ValueError(f"fft_causal_conv: k {tuple(k.shape)} broadcasts u {tuple(u.shape)} to {tuple(shape)}; "
                         "k may broadcast against u, not u against k")
    return shape


@torch.library.custom_op("mad_bench::fft_causal_conv", mutates_args=())
def _fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    _check(u, k)
    return fft_conv_fwd(u, k)


@_fft_conv.register_fake
def _(u, k):
    return u.new_empty(_check(u, k))


@torch.library.custom_op("mad_bench::fft_causal_conv_bwd", mutates_args=())
def _fft_conv_bwd(u: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return fft_conv_bwd(u, k, g)


@_fft_conv_bwd.register_fake
def _(u, k, g):
    return u.new_empty(u.shape), k.new_empty(k.shape)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, g):
    u, k = ctx.saved_tensors
    return _fft_conv_bwd(u, k, g)


_fft_conv.register_autograd(_backward, setup_context=_setup)


def _vmap_fwd(info, in_dims, u, k):
    """The members as dim 0 of both (an unvmapped one expanded), the filter given singleton
    dims after it so it still broadcasts against the batch: one call for all members."""
    G = info.batch_size
    u, k = (a.movedim(d, 0) if d is not None else a.expand(G, *a.shape) for a, d in zip((u, k), in_dims))
    return _fft_conv(u, k.reshape(G, *([1] * (u.dim() - k.dim())), *k.shape[1:])), 0


_fft_conv.register_vmap(_vmap_fwd)  # the backward runs below vmap, on the members-leading tensors


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[..., t] = sum_{s <= t} k[..., t - s] u[..., s]`` via FFT of size 2L (``u [..., L]``,
    ``k [..., L]`` broadcast against ``u``); computed in fp32 (fp64 stays fp64), ``u``'s dtype out."""
    return _fft_conv(u, k)
