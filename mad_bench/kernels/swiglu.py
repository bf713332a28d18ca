"""Fused SwiGLU activation ``silu(gate) * up`` (elementwise), forward and backward in Triton.

Inputs are viewed as ``[M, H]`` rows with any row stride, so ``gate, up = proj(x).chunk(2, -1)``
is consumed without copies.  The backward recomputes ``silu(gate)`` from the saved inputs (nothing extra is stored) and
writes both input gradients in one pass.  Math in fp32, storage in the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import check_impl, jit, pick, resolve_impl, tl, triton

__all__ = ["swiglu", "swiglu_ref", "SwiGLUFunction"]


def swiglu_ref(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Pure-torch reference: ``silu(gate) * up``."""
    return F.silu(gate) * up


@jit
def _swiglu_fwd_kernel(G, U, Y, M, H, stride_g, stride_u, stride_y,
                       BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows < M)[:, None] & (cols < H)[None, :]
    g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + rows[:, None] * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@jit
def _swiglu_bwd_kernel(G, U, DY, DG, DU, M, H, stride_g, stride_u, stride_dy, stride_d,
                       BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows < M)[:, None] & (cols < H)[None, :]
    g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + rows[:, None] * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    du = dy * g * s
    dg = dy * u * s * (1.0 + g * (1.0 - s))
    tl.store(DG + rows[:, None] * stride_d + cols[None, :], dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + rows[:, None] * stride_d + cols[None, :], du.to(DU.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``[M, H]`` view with unit column stride; keeps row-strided views (e.g. ``chunk(2, -1)``)."""
    t2 = t.reshape(-1, t.shape[-1]) if t.dim() != 2 else t
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _cfg(H: int, bwd: bool) -> dict:
    BH = min(triton.next_power_of_2(H), 1024)
    BM = max(1, (2048 if bwd else 4096) // BH)
    # interpreter: one big tile -> a single program instance at test sizes
    return pick(dict(BLOCK_M=BM, BLOCK_H=BH, num_warps=4 if bwd else 8),
                dict(BLOCK_M=64, BLOCK_H=triton.next_power_of_2(H)))


def _grid(M, H, cfg):
    return (triton.cdiv(M, cfg["BLOCK_M"]), triton.cdiv(H, cfg["BLOCK_H"]))


def swiglu_fwd(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Triton forward on ``[M, H]`` row views; returns a contiguous ``[M, H]``."""
    M, H = g.shape
    y = torch.empty((M, H), device=g.device, dtype=g.dtype)
    cfg = _cfg(H, False)
    _swiglu_fwd_kernel[_grid(M, H, cfg)](g, u, y, M, H, g.stride(0), u.stride(0), y.stride(0), **cfg)
    return y


def swiglu_bwd(g, u, dy):
    M, H = g.shape
    dg = torch.empty((M, H), device=g.device, dtype=g.dtype)
    du = torch.empty((M, H), device=u.device, dtype=u.dtype)
    cfg = _cfg(H, True)
    _swiglu_bwd_kernel[_grid(M, H, cfg)](g, u, dy, dg, du, M, H, g.stride(0), u.stride(0), dy.stride(0),
                                        dg.stride(0), **cfg)
    return dg, du


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        if gate.shape != up.shape:
            raise ValueError(f"gate and up must have the same shape, got {tuple(gate.shape)} vs {tuple(up.shape)}")
        if gate.dtype != up.dtype:
            raise ValueError(f"gate and up must have the same dtype, got {gate.dtype} vs {up.dtype}")
        g, u = _rows(gate), _rows(up)
        ctx.save_for_backward(g, u)
        ctx.shape = gate.shape
        return swiglu_fwd(g, u).view(gate.shape)

    @staticmethod
    def backward(ctx, dy):
        g, u = ctx.saved_tensors
        dg, du = swiglu_bwd(g, u, _rows(dy))
        return dg.view(ctx.shape), du.view(ctx.shape)


def swiglu(gate: torch.Tensor, up: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """``silu(gate) * up`` with a fused Triton forward/backward on CUDA."""
    check_impl(impl)
    if resolve_impl(impl, gate) == "torch":
        return swiglu_ref(gate, up)
    return SwiGLUFunction.apply(gate, up)
