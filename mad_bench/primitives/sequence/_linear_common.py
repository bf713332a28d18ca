"""Shared pieces of the linear-attention layers: q/k/v projections, per-head norm, the short
causal conv module and the FLOP estimate. The recurrences themselves are ops:
:mod:`mad_bench.ops.gla` (GLA, retention, linear attention) and :mod:`mad_bench.ops.delta_rule`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives._linear import head_width
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step

__all__ = ["chunked_flops_per_token", "HeadNorm", "CausalShortConv", "add_qkv_projections",
           "add_delta_rule_io", "conv_qkv", "conv_qkv_step", "delta_state"]

# ----------------------------------------------------------------------------- modules / misc


def chunked_flops_per_token(
    n_heads: int, key_dim: int, value_dim: int, chunk_size: int, seq_len: int
) -> float:
    """Mixing FLOPs per token of a chunked linear-attention form (per-head dims).

    Intra-chunk scores and their product with values over the average causal context within a
    chunk (``min(chunk, L) / 2``), plus reading the chunk-start state and writing the update.
    """
    ctx = min(chunk_size, seq_len) / 2
    return n_heads * (2.0 * ctx * (key_dim + value_dim) + 4.0 * key_dim * value_dim)


class HeadNorm(nn.Module):
    """Normalisation over the last (per-head) dim with a weight shared across heads.

    ``kind='rms'`` is fla's / MAD-Lab's per-head RMSNorm; ``kind='layer'`` is RetNet's GroupNorm
    (one group per head = LayerNorm over each head's features, affine).
    """

    def __init__(self, dim: int, kind: str = "rms", eps: float = 1e-5):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class CausalShortConv(nn.Module):
    """Depthwise causal convolution over time (``[B, L, D] -> [B, L, D]``, no bias) with a step
    form: the weights of the op :func:`mad_bench.ops.causal_conv.causal_conv1d`.

    The step state is the last ``kernel_size - 1`` inputs, ``[B, D, kernel_size - 1]``.
    """

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=dim, bias=False)

    def forward(self, x: torch.Tensor, impl: str = "auto") -> torch.Tensor:
        return causal_conv1d(x, self.conv.weight, impl=impl)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        dim = self.conv.weight.shape[0]
        return torch.zeros(batch_size, dim, self.kernel_size - 1, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return causal_conv1d_step(x_t, cache, self.conv.weight)


def add_qkv_projections(layer: nn.Module, cfg, d_model: int) -> None:
    """The multi-head q/k/v projections the linear-attention layers share (no bias); sets
    ``n_heads``, ``key_dim``, ``value_dim`` and the per-head ``dk``, ``dv`` on ``layer``."""
    H = layer.n_heads = cfg.n_heads
    layer.key_dim = head_width(d_model, cfg.expand_k, "expand_k", H)
    layer.value_dim = head_width(d_model, cfg.expand_v, "expand_v", H)
    layer.dk, layer.dv = layer.key_dim // H, layer.value_dim // H
    layer.q_proj = nn.Linear(d_model, layer.key_dim, bias=False)
    layer.k_proj = nn.Linear(d_model, layer.key_dim, bias=False)
    layer.v_proj = nn.Linear(d_model, layer.value_dim, bias=False)


def add_delta_rule_io(layer: nn.Module, cfg, d_model: int) -> None:
    """What the delta-rule layers put around their op (after their q/k/v projections): the short
    convs on q, k, v (``cfg.short_conv``), then the per-head RMS norm, the optional swish gate
    (``cfg.output_gate``) and the output projection."""
    if cfg.short_conv:
        layer.q_conv = CausalShortConv(layer.key_dim, cfg.conv_size)
        layer.k_conv = CausalShortConv(layer.key_dim, cfg.conv_size)
        layer.v_conv = CausalShortConv(layer.value_dim, cfg.conv_size)
    layer.g_proj = nn.Linear(d_model, layer.value_dim, bias=False) if cfg.output_gate else None
    layer.o_norm = HeadNorm(layer.dv, "rms", cfg.norm_eps)
    layer.o_proj = nn.Linear(layer.value_dim, d_model, bias=False)


def conv_qkv(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The delta-rule layers' q, k, v: projections, then (``cfg.short_conv``) their short convs."""
    q, k, v = layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)
    if layer.cfg.short_conv:
        impl = layer.cfg.impl
        q, k, v = layer.q_conv(q, impl), layer.k_conv(k, impl), layer.v_conv(v, impl)
    return q, k, v


def conv_qkv_step(layer: nn.Module, x_t: torch.Tensor, state: dict, new: dict):
    """One step of :func:`conv_qkv`; the convs' new windows go into ``new``."""
    q, k, v = layer.q_proj(x_t), layer.k_proj(x_t), layer.v_proj(x_t)
    if layer.cfg.short_conv:
        q, new["q"] = layer.q_conv.step(q, state["q"])
        k, new["k"] = layer.k_conv.step(k, state["k"])
        v, new["v"] = layer.v_conv.step(v, state["v"])
    return q, k, v


def delta_state(layer: nn.Module, batch_size: int, device=None, dtype=None) -> dict:
    """The delta-rule layers' state: ``S [B, H, dk, dv]`` (at least fp32: the parameters'
    dtype, fp64 for an fp64 layer) and the short convs' windows."""
    kind = layer.state_kind(device, dtype)
    state = {"S": torch.zeros(batch_size, layer.n_heads, layer.dk, layer.dv, **kind)}
    if layer.cfg.short_conv:
        for name in ("q", "k", "v"):
            state[name] = getattr(layer, f"{name}_conv").init_state(batch_size, **kind)
    return state
