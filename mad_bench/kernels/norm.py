"""Fused RMSNorm / LayerNorm with an optional residual add (pre-norm block style).

``rms_norm(x, w, eps, residual=r)`` computes ``h = x + r`` and returns ``(norm(h) * w, h)``;
without a residual it returns ``norm(x) * w``.  LayerNorm adds the optional bias.

Triton layout: the input is viewed as ``[M, D]`` rows; a program normalises ``BLOCK_M`` rows at
once (``BLOCK_D = next_pow2(D)``), so narrow MAD widths (D=128) get several rows per program and
few programs.  The backward is persistent: ``G`` programs stride over row blocks, each keeping a
partial ``dw``/``db`` in registers, written once to a ``[G, D]`` buffer summed by torch.
Statistics are computed in fp32; outputs are stored in the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import check_impl, jit, next_pow2, num_sms, pick, resolve_impl, tl, triton

__all__ = ["rms_norm", "layer_norm", "rms_norm_ref", "layer_norm_ref", "NormFunction"]


# ----------------------------------------------------------------------------- references
def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def rms_norm_ref(x, weight=None, eps: float = 1e-6, residual=None):
    """Pure-torch RMSNorm (statistics in at least fp32, output in ``x.dtype``)."""
    h = x + residual if residual is not None else x
    hf = _upcast(h)
    y = hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    y = y.to(x.dtype)
    return (y, h) if residual is not None else y


def layer_norm_ref(x, weight=None, bias=None, eps: float = 1e-5, residual=None):
    """Pure-torch LayerNorm (statistics in at least fp32, output in ``x.dtype``)."""
    h = x + residual if residual is not None else x
    hf = _upcast(h)
    w = weight.to(hf.dtype) if weight is not None else None
    b = bias.to(hf.dtype) if bias is not None else None
    y = F.layer_norm(hf, (hf.shape[-1],), w, b, eps).to(x.dtype)
    return (y, h) if residual is not None else y


# ----------------------------------------------------------------------------- kernels
@jit
def _norm_fwd_kernel(
    X, RES, W, B, Y, RES_OUT, MEAN, RSTD,
    M, D, stride_x, stride_res, stride_y, stride_ro, eps,
    IS_RMS: tl.constexpr, HAS_RES: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < M
    cmask = cols < D
    mask = rmask[:, None] & cmask[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        x += tl.load(RES + rows64 * stride_res + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(RES_OUT + rows64 * stride_ro + cols[None, :], x.to(RES_OUT.dtype.element_ty), mask=mask)
    if IS_RMS:
        xc = x
    else:
        mean = tl.sum(x, axis=1) / D
        tl.store(MEAN + rows, mean, mask=rmask)
        xc = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(RSTD + rows, rstd, mask=rmask)
    y = xc * rstd[:, None]
    if HAS_W:
        w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
        y = y * w[None, :]
    if HAS_B:
        b = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
        y = y + b[None, :]
    tl.store(Y + rows64 * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@jit
def _norm_bwd_kernel(
    H, W, DY, DRES_OUT, DH, MEAN, RSTD, DW_PART, DB_PART,
    M, D, stride_h, stride_dy, stride_dro, stride_dh,
    IS_RMS: tl.constexpr, HAS_DRES: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    if HAS_W:
        w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(pid * BLOCK_M, M, nprog * BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        h = tl.load(H + rows64 * stride_h + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        if IS_RMS:
            xhat = h * rstd[:, None]
        else:
            mean = tl.load(MEAN + rows, mask=rmask, other=0.0)
            xhat = tl.where(mask, (h - mean[:, None]) * rstd[:, None], 0.0)
        if HAS_W:
            wdy = dy * w[None, :]
        else:
            wdy = dy
        c1 = tl.sum(xhat * wdy, axis=1) / D
        if IS_RMS:
            dh = (wdy - xhat * c1[:, None]) * rstd[:, None]
        else:
            c2 = tl.sum(wdy, axis=1) / D
            dh = (wdy - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        if HAS_DRES:
            dh += tl.load(DRES_OUT + rows64 * stride_dro + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(DH + rows64 * stride_dh + cols[None, :], dh.to(DH.dtype.element_ty), mask=mask)
        if HAS_W:
            dw_acc += tl.sum(dy * xhat, axis=0)
        if HAS_B:
            db_acc += tl.sum(dy, axis=0)
    if HAS_W:
        tl.store(DW_PART + pid * D + cols, dw_acc, mask=cmask)
    if HAS_B:
        tl.store(DB_PART + pid * D + cols, db_acc, mask=cmask)


# ----------------------------------------------------------------------------- launchers
def _rows(t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _fwd_cfg(D: int) -> dict:
    BD = next_pow2(D)
    BM = max(1, min(64, 4096 // BD))
    nw = 4 if BM * BD <= 4096 else (8 if BD <= 8192 else 16)
    # interpreter: big row tiles -> few (slow) program instances
    return pick(dict(BLOCK_M=BM, BLOCK_D=BD, num_warps=nw), dict(BLOCK_M=16, BLOCK_D=BD))


def _bwd_cfg(D: int) -> dict:
    BD = next_pow2(D)
    BM = max(1, min(32, 2048 // BD))
    nw = 4 if BM * BD <= 2048 else (8 if BD <= 8192 else 16)
    return pick(dict(BLOCK_M=BM, BLOCK_D=BD, num_warps=nw), dict(BLOCK_M=16, BLOCK_D=BD))


def norm_fwd(x, weight, bias, residual, eps: float, is_rms: bool):
    """Triton forward on 2-D ``[M, D]`` rows. Returns ``(y, h, mean, rstd)``."""
    M, D = x.shape
    y = torch.empty_like(x)
    h = torch.empty_like(x, dtype=residual.dtype) if residual is not None else None
    mean = None if is_rms else torch.empty(M, device=x.device, dtype=torch.float32)
    rstd = torch.empty(M, device=x.device, dtype=torch.float32)
    cfg = _fwd_cfg(D)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]),)
    _norm_fwd_kernel[grid](
        x, residual, weight, bias, y, h, mean, rstd,
        M, D, x.stride(0), residual.stride(0) if residual is not None else 0, y.stride(0),
        h.stride(0) if h is not None else 0, eps,
        IS_RMS=is_rms, HAS_RES=residual is not None, HAS_W=weight is not None, HAS_B=bias is not None,
        **cfg,
    )
    return y, (h if residual is not None else x), mean, rstd


def norm_bwd(h, weight, has_bias: bool, dy, dres_out, mean, rstd, is_rms: bool, dh_dtype):
    """Triton backward on 2-D rows. Returns ``(dh, dw, db)`` (dw/db None when absent)."""
    M, D = h.shape
    dh = torch.empty((M, D), device=h.device, dtype=dh_dtype)
    cfg = _bwd_cfg(D)
    n_blocks = triton.cdiv(M, cfg["BLOCK_M"])
    G = max(1, min(n_blocks, num_sms(h.device) * 8))
    dw_part = torch.empty((G, D), device=h.device, dtype=torch.float32) if weight is not None else None
    db_part = torch.empty((G, D), device=h.device, dtype=torch.float32) if has_bias else None
    _norm_bwd_kernel[(G,)](
        h, weight, dy, dres_out, dh, mean, rstd, dw_part, db_part,
        M, D, h.stride(0), dy.stride(0), dres_out.stride(0) if dres_out is not None else 0, dh.stride(0),
        IS_RMS=is_rms, HAS_DRES=dres_out is not None, HAS_W=weight is not None, HAS_B=has_bias,
        **cfg,
    )
    dw = dw_part.sum(0).to(weight.dtype) if weight is not None else None
    db = db_part.sum(0) if has_bias else None
    return dh, dw, db


class NormFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton norm; returns ``y`` or ``(y, h)`` when a residual is given."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, is_rms):
        shape = x.shape
        x2 = _rows(x)
        r2 = _rows(residual) if residual is not None else None
        w = weight.contiguous() if weight is not None else None
        b = bias.contiguous() if bias is not None else None
        y, h, mean, rstd = norm_fwd(x2, w, b, r2, eps, is_rms)
        ctx.save_for_backward(h, w, mean, rstd)
        ctx.is_rms = is_rms
        ctx.has_res = residual is not None
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.x_dtype = x.dtype
        ctx.res_dtype = residual.dtype if residual is not None else None
        ctx.shape = shape
        if residual is not None:
            return y.view(shape), h.view(shape)
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy, *rest):
        h, w, mean, rstd = ctx.saved_tensors
        dres_out = rest[0] if (ctx.has_res and rest and rest[0] is not None) else None
        dy2 = _rows(dy)
        dro2 = _rows(dres_out) if dres_out is not None else None
        dh, dw, db = norm_bwd(h, w, ctx.has_bias, dy2, dro2, mean, rstd, ctx.is_rms, ctx.x_dtype)
        dh = dh.view(ctx.shape)
        if db is not None:
            db = db.to(ctx.bias_dtype)
        dres = dh.to(ctx.res_dtype) if ctx.has_res else None
        return dh, dw, db, dres, None, None


# ----------------------------------------------------------------------------- public API
def rms_norm(x, weight=None, eps: float = 1e-6, residual=None, impl: str = "auto"):
    """RMSNorm over the last dim; with ``residual``: returns ``(norm(x + residual) * weight, x + residual)``."""
    check_impl(impl)
    if resolve_impl(impl, x) == "torch":
        return rms_norm_ref(x, weight, eps, residual)
    return NormFunction.apply(x, weight, None, residual, eps, True)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5, residual=None, impl: str = "auto"):
    """LayerNorm over the last dim; with ``residual``: returns ``(LN(x + residual), x + residual)``."""
    check_impl(impl)
    if resolve_impl(impl, x) == "torch":
        return layer_norm_ref(x, weight, bias, eps, residual)
    return NormFunction.apply(x, weight, bias, residual, eps, False)
