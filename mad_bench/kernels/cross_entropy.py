"""Fused cross-entropy for the LM head (Liger style).

One forward kernel computes, per row, an online softmax over vocabulary blocks (running max and
sum of exponentials), the loss ``logsumexp(x) - x[target]``, and -- in a second sweep over the
same row -- the gradient of the logits ``(softmax(x) - onehot(target)) / n_valid``, so the backward
is only a scale by the incoming gradient.  ``ignore_index`` rows get zero loss and gradient; the
loss is the mean over non-ignored targets (NaN when every target is ignored, like torch).
``n_valid`` stays on the device (no host sync).  Statistics in fp32; the logits gradient is
stored in the logits dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import check_impl, jit, next_pow2, pick, resolve_impl, tl, triton

__all__ = ["cross_entropy", "cross_entropy_ref", "CrossEntropyFunction"]

IGNORE_INDEX = -100


def cross_entropy_ref(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Reference: ``F.cross_entropy`` (mean over non-ignored) on logits upcast to >= fp32."""
    V = logits.shape[-1]
    x = logits.reshape(-1, V)
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return F.cross_entropy(x, target.reshape(-1), ignore_index=ignore_index)


@jit
def _ce_fwd_kernel(
    X, T, LOSS, DX, NVALID, M, V, stride_x, stride_dx, ignore_index,
    COMPUTE_GRAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    rows64 = rows.to(tl.int64)
    t = tl.load(T + rows, mask=rmask, other=ignore_index).to(tl.int64)
    valid = rmask & (t != ignore_index)
    x_base = X + rows64[:, None] * stride_x
    # sweep 1: online max / sum-exp over vocab blocks
    m = tl.full([BLOCK_M], -1e30, dtype=tl.float32)
    d = tl.zeros([BLOCK_M], dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        mask = rmask[:, None] & (cols < V)[None, :]
        x = tl.load(x_base + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
        m = m_new
    lse = m + tl.log(tl.where(rmask, d, 1.0))
    n_valid = tl.load(NVALID).to(tl.float32)
    scale = 1.0 / tl.maximum(n_valid, 1.0)
    x_t = tl.load(X + rows64 * stride_x + tl.where(valid, t, 0), mask=valid, other=0.0).to(tl.float32)
    loss = tl.where(valid, (lse - x_t) * scale, 0.0)
    tl.store(LOSS + rows, loss, mask=rmask)
    if COMPUTE_GRAD:
        # sweep 2: dlogits = (softmax - onehot) / n_valid, zero on ignored rows
        dx_base = DX + rows64[:, None] * stride_dx
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            mask = rmask[:, None] & (cols < V)[None, :]
            x = tl.load(x_base + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
            p = tl.exp(x - lse[:, None])
            g = p - tl.where(cols[None, :] == t[:, None], 1.0, 0.0)
            g = tl.where(valid[:, None], g * scale, 0.0)
            tl.store(dx_base + cols[None, :], g.to(DX.dtype.element_ty), mask=mask)


def _cfg(V: int) -> dict:
    BV = min(next_pow2(V), 4096)
    BM = max(1, min(32, 4096 // BV))
    nw = 8 if BM * BV >= 4096 and BV >= 2048 else 4
    # interpreter: whole (tiny) problem in one or two program instances
    return pick(dict(BLOCK_M=BM, BLOCK_V=BV, num_warps=nw), dict(BLOCK_M=32, BLOCK_V=min(next_pow2(V), 256)))


def cross_entropy_fwd(logits2d: torch.Tensor, target1d: torch.Tensor, ignore_index: int, compute_grad: bool):
    """Returns ``(loss, dlogits or None)``; ``dlogits`` already divided by ``n_valid``."""
    M, V = logits2d.shape
    n_valid = (target1d != ignore_index).sum().to(torch.float32)
    loss_rows = torch.empty(M, device=logits2d.device, dtype=torch.float32)
    dx = torch.empty_like(logits2d) if compute_grad else None
    cfg = _cfg(V)
    _ce_fwd_kernel[(triton.cdiv(M, cfg["BLOCK_M"]),)](
        logits2d, target1d, loss_rows, dx, n_valid, M, V, logits2d.stride(0),
        dx.stride(0) if dx is not None else 0, ignore_index,
        COMPUTE_GRAD=compute_grad, **cfg,
    )
    loss = loss_rows.sum()
    # all targets ignored: the kernel gives 0; match torch's NaN
    loss = torch.where(n_valid > 0, loss, torch.full_like(loss, float("nan")))
    return loss, dx


class CrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, ignore_index):
        V = logits.shape[-1]
        x = logits.reshape(-1, V)
        if x.stride(-1) != 1:
            x = x.contiguous()
        t = target.reshape(-1).contiguous()
        if t.shape[0] != x.shape[0]:
            raise ValueError(f"target has {t.shape[0]} elements, logits have {x.shape[0]} rows")
        loss, dx = cross_entropy_fwd(x, t, ignore_index, compute_grad=logits.requires_grad)
        ctx.save_for_backward(dx if dx is not None else torch.empty(0))
        ctx.shape = logits.shape
        return loss

    @staticmethod
    def backward(ctx, dloss):
        (dx,) = ctx.saved_tensors
        return (dx * dloss.to(dx.dtype)).view(ctx.shape), None, None


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                  impl: str = "auto") -> torch.Tensor:
    """Mean cross-entropy over non-ignored targets of ``logits[..., V]`` vs ``target[...]`` (fp32 loss)."""
    check_impl(impl)
    if resolve_impl(impl, logits) == "torch":
        return cross_entropy_ref(logits, target, ignore_index)
    return CrossEntropyFunction.apply(logits, target, ignore_index)
