"""Triton kernels, one module per op family, each with a pure-torch reference beside it.

Every public op takes ``impl="auto"|"triton"|"torch"`` (see :func:`dispatch.resolve_impl`).
"""
from .cross_entropy import cross_entropy, cross_entropy_ref
from .dispatch import interpreting, resolve_impl, triton_available
from .norm import layer_norm, layer_norm_ref, rms_norm, rms_norm_ref
from .short_conv import short_conv, short_conv_ref
from .swiglu import swiglu, swiglu_ref

__all__ = [
    "resolve_impl", "triton_available", "interpreting",
    "rms_norm", "rms_norm_ref", "layer_norm", "layer_norm_ref",
    "swiglu", "swiglu_ref",
    "cross_entropy", "cross_entropy_ref",
    "short_conv", "short_conv_ref",
]
