"""Causal depthwise short convolution with fused bias and activation, in Triton.

``y[b, t, d] = act(bias[d] + sum_k weight[d, k] * x[b, t - (K-1) + k, d])`` with ``x[B, L, D]``
(any batch/time strides, unit channel stride), ``weight[D, K]`` (``[D, 1, K]`` as stored by
``nn.Conv1d`` is accepted too), ``act`` in ``none|silu``.

Per-member parameters: ``weight[G, D, K]``, ``bias[G, D]`` (either or both) give batch row ``r``
the parameters of member ``r // (B / G)``, and their gradients come back per member: the
ensemble engine's vmap rule folds G members into the batch and launches once per direction
(see :func:`causal_conv1d_triton`).

Forward: one program per ``[BLOCK_L, BLOCK_D]`` tile, K shifted loads.  Backward: one kernel
computes ``dx``, and partial ``dw``/``db``: the pre-activation at the K shifted positions a
tile's ``dx`` needs is recomputed (K*K cached loads, nothing saved in the forward), programs
stride over time tiles so the partial-sum buffer stays ``[B * n_time_programs, K, D]``.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..vmap_rules import member_count, member_sum, register_fold
from ..dispatch import jit, next_pow2, num_sms, pick, tl, triton

__all__ = ["causal_conv1d_triton", "short_conv_op"]


@jit
def _conv_fwd_kernel(
    X, W, BIAS, Y, L, D, RPM, s_wm, s_bm, sxb, sxl, syb, syl,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    mem = pid_b // RPM  # member of this batch row (per-member weight / bias; stride 0 if shared)
    wb = W + mem * s_wm
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    c = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = c < D
    xb = X + pid_b * sxb
    acc = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(BIAS + mem * s_bm + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        w = tl.load(wb + c * K + k, mask=cmask, other=0.0).to(tl.float32)
        tk = t - (K - 1) + k
        m = ((tk >= 0) & (tk < L))[:, None] & cmask[None, :]
        xv = tl.load(xb + tk[:, None] * sxl + c[None, :], mask=m, other=0.0).to(tl.float32)
        acc += xv * w[None, :]
    if ACT == 1:
        acc = acc * tl.sigmoid(acc)
    om = (t < L)[:, None] & cmask[None, :]
    tl.store(Y + pid_b * syb + t[:, None] * syl + c[None, :], acc.to(Y.dtype.element_ty), mask=om)


@jit
def _conv_bwd_kernel(
    X, W, BIAS, DY, DX, DW_PART, DB_PART, L, D, RPM, s_wm, s_bm,
    sxb, sxl, sdyb, sdyl, sdxb, sdxl,
    K: tl.constexpr, KP: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2)
    n_lprog = tl.num_programs(0)
    mem = pid_b.to(tl.int64) // RPM
    wb = W + mem * s_wm
    c = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = c < D
    kidx = tl.arange(0, KP)
    xb = X + pid_b.to(tl.int64) * sxb
    dyb = DY + pid_b.to(tl.int64) * sdyb
    dxb = DX + pid_b.to(tl.int64) * sdxb
    if HAS_BIAS:
        bias = tl.load(BIAS + mem * s_bm + c, mask=cmask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([KP, BLOCK_D], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for l0 in range(pid_l * BLOCK_L, L, n_lprog * BLOCK_L):
        t = l0 + tl.arange(0, BLOCK_L)
        dx_acc = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
        for s in tl.static_range(K):
            # gradient of the pre-activation at positions t + s; it reaches dx(t) through tap K-1-s
            ts = t + s
            ms = (ts < L)[:, None] & cmask[None, :]
            dz = tl.load(dyb + ts[:, None] * sdyl + c[None, :], mask=ms, other=0.0).to(tl.float32)
            if ACT == 1:
                z = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
                if HAS_BIAS:
                    z += bias[None, :]
                for j in tl.static_range(K):
                    wj = tl.load(wb + c * K + j, mask=cmask, other=0.0).to(tl.float32)
                    tj = ts - (K - 1) + j
                    mj = ((tj >= 0) & (tj < L))[:, None] & cmask[None, :]
                    z += tl.load(xb + tj[:, None] * sxl + c[None, :], mask=mj, other=0.0).to(tl.float32) * wj[None, :]
                sg = tl.sigmoid(z)
                dz = dz * sg * (1.0 + z * (1.0 - sg))
            w_s = tl.load(wb + c * K + (K - 1 - s), mask=cmask, other=0.0).to(tl.float32)
            dx_acc += dz * w_s[None, :]
            if s == 0:
                if HAS_BIAS:
                    db_acc += tl.sum(dz, axis=0)
                for k in tl.static_range(K):
                    tk = t - (K - 1) + k
                    mk = ((tk >= 0) & (tk < L))[:, None] & cmask[None, :]
                    xv = tl.load(xb + tk[:, None] * sxl + c[None, :], mask=mk, other=0.0).to(tl.float32)
                    dw_acc += tl.where(kidx[:, None] == k, tl.sum(dz * xv, axis=0)[None, :], 0.0)
        om = (t < L)[:, None] & cmask[None, :]
        tl.store(dxb + t[:, None] * sdxl + c[None, :], dx_acc.to(DX.dtype.element_ty), mask=om)
    part = pid_b * n_lprog + pid_l
    pm = (kidx < K)[:, None] & cmask[None, :]
    tl.store(DW_PART + part * (K * D) + kidx[:, None] * D + c[None, :], dw_acc, mask=pm)
    if HAS_BIAS:
        tl.store(DB_PART + part * D + c, db_acc, mask=cmask)


def _cfg(D: int, bwd: bool) -> dict:
    BD = min(next_pow2(D), 128 if not bwd else 64)
    return pick(dict(BLOCK_L=32, BLOCK_D=BD, num_warps=4), dict(BLOCK_L=32, BLOCK_D=next_pow2(D)))


def _prep(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _members(B: int, w, bias) -> tuple[int, int, int, int]:
    """(members, rows per member, member strides of weight and bias): stride 0 when shared."""
    G = member_count(B, ("weight", w, 2), ("bias", bias, 1))
    s_wm = w[0].numel() if w.dim() == 3 else 0
    s_bm = bias.shape[-1] if bias is not None and bias.dim() == 2 else 0
    return G, B // G, s_wm, s_bm


def short_conv_fwd(x, w, bias, act: int):
    B, L, D = x.shape
    K = w.shape[-1]
    _, rpm, s_wm, s_bm = _members(B, w, bias)
    y = torch.empty((B, L, D), device=x.device, dtype=x.dtype)
    cfg = _cfg(D, False)
    grid = (triton.cdiv(L, cfg["BLOCK_L"]), triton.cdiv(D, cfg["BLOCK_D"]), B)
    _conv_fwd_kernel[grid](
        x, w, bias, y, L, D, rpm, s_wm, s_bm, x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        K=K, HAS_BIAS=bias is not None, ACT=act, **cfg,
    )
    return y


def short_conv_bwd(x, w, bias, dy, act: int):
    B, L, D = x.shape
    K = w.shape[-1]
    G, rpm, s_wm, s_bm = _members(B, w, bias)
    dx = torch.empty((B, L, D), device=x.device, dtype=x.dtype)
    cfg = _cfg(D, True)
    n_d = triton.cdiv(D, cfg["BLOCK_D"])
    n_lt = triton.cdiv(L, cfg["BLOCK_L"])
    # enough programs to fill the GPU, then stride over time tiles (keeps the partials small)
    n_l = max(1, min(n_lt, triton.cdiv(num_sms(x.device) * 8, B * n_d)))
    P = B * n_l  # partial p = row * n_l + time program: member-major, as member_sum wants
    dw_part = torch.empty((P, K, D), device=x.device, dtype=torch.float32)
    db_part = torch.empty((P, D), device=x.device, dtype=torch.float32) if bias is not None else None
    _conv_bwd_kernel[(n_l, n_d, B)](
        x, w, bias, dy, dx, dw_part, db_part, L, D, rpm, s_wm, s_bm,
        x.stride(0), x.stride(1), dy.stride(0), dy.stride(1), dx.stride(0), dx.stride(1),
        K=K, KP=next_pow2(K), HAS_BIAS=bias is not None, ACT=act, **cfg,
    )
    dw = member_sum(dw_part, w.dim() == 3, G).transpose(-1, -2)
    db = member_sum(db_part, bias.dim() == 2, G) if bias is not None else None
    return dx, dw, db


def _check(x, weight, bias):
    if x.dim() != 3:
        raise ValueError(f"x must be [B, L, D], got shape {tuple(x.shape)}")
    B, _, D = x.shape
    member_count(B, ("weight", weight, 2), ("bias", bias, 1))
    if weight.shape[-2] != D or (bias is not None and bias.shape[-1] != D):
        raise ValueError(f"weight must be [D, K] or [members, D, K] and bias [D] or [members, D] with "
                         f"D = {D} (x's channels); got weight {tuple(weight.shape)}, bias "
                         f"{None if bias is None else tuple(bias.shape)}")


@torch.library.custom_op("mad_bench::short_conv", mutates_args=())
def short_conv_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: int) -> torch.Tensor:
    """``weight [D, K]`` or per member ``[G, D, K]``, ``bias`` None, ``[D]`` or ``[G, D]``."""
    _check(x, weight, bias)
    return short_conv_fwd(_prep(x), weight.contiguous(), bias.contiguous() if bias is not None else None, act)


@short_conv_op.register_fake
def _(x, weight, bias, act):
    _check(x, weight, bias)
    return x.new_empty(x.shape)


@torch.library.custom_op("mad_bench::short_conv_bwd", mutates_args=())
def short_conv_bwd_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dy: torch.Tensor,
                      act: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx, dweight, dbias)``; ``dbias`` is empty when there is no bias (an op returns tensors)."""
    b = bias.contiguous() if bias is not None else None
    dx, dw, db = short_conv_bwd(_prep(x), weight.contiguous(), b, _prep(dy), act)
    # contiguous, as the fake says: compiled code indexes an op's outputs by the fake's strides
    return dx, dw.to(weight.dtype).contiguous(), db.to(bias.dtype) if db is not None else weight.new_empty(0)


@short_conv_bwd_op.register_fake
def _(x, weight, bias, dy, act):
    return x.new_empty(x.shape), weight.new_empty(weight.shape), (bias if bias is not None else weight).new_empty(
        bias.shape if bias is not None else (0,))


def _setup(ctx, inputs, output):
    x, weight, bias, act = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.act = act


def _backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = short_conv_bwd_op(x, weight, bias, dy, ctx.act)
    return dx, dw, db if bias is not None else None, None


short_conv_op.register_autograd(_backward, setup_context=_setup)
register_fold(short_conv_op, fold_args=(0,), member_args=(1, 2))


def causal_conv1d_triton(x, weight, bias=None, silu: bool = False) -> torch.Tensor:
    """The Triton path of :func:`mad_bench.ops.causal_conv.causal_conv1d`.

    Under the engine's vmap ``x`` folds into the batch and a per-member weight / bias is passed
    with a leading member dim: one launch for all members."""
    if weight.dim() == 3 and weight.shape[1] == 1:
        weight = weight[:, 0]  # nn.Conv1d's [D, 1, K]
    return short_conv_op(x, weight, bias, int(silu))
