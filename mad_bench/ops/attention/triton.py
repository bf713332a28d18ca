"""Causal softmax attention for small heads, in Triton (flash-style: online softmax, nothing of
size L x L in memory; the backward recomputes the probabilities from the saved log-sum-exp).

Built for MAD's shapes: heads of 8-32 dims (flash-attention pads a head of 8 to 32, so three
quarters of its tensor-core work is padding) at lengths 32-1024. The head dim is padded to 16
(``tl.dot``'s minimum) by masked loads. An optional ``window`` masks keys older than
``window - 1`` positions (sliding-window attention), which also skips their blocks.

Forward: one program per (query block, batch x head), looping over the causal key blocks.
Backward: ``delta = rowsum(o * do)`` in torch, then one kernel per key block for ``dk, dv``
(looping over the query blocks that see it) and one per query block for ``dq``: no atomics.
"""
from __future__ import annotations

import math

import torch

from ..dispatch import jit, next_pow2, pick, tl, triton
from ..vmap_rules import vmap_apply

__all__ = ["attention_triton"]


@jit
def _keep(s, rows, cols, L, WINDOW: tl.constexpr):
    s = s.to(tl.float32)  # inductor passes the scale as fp64: keep the loop-carried types fp32
    ok = (cols[None, :] <= rows[:, None]) & (cols[None, :] < L)
    if WINDOW > 0:
        ok = ok & (rows[:, None] - cols[None, :] < WINDOW)
    return tl.where(ok, s, float("-inf"))


@jit
def _tile(ptr, rows, dims, L, D):
    """The ``[rows, dims]`` tile of one ``[L, D]`` head (zeros past either end)."""
    return tl.load(ptr + rows[:, None] * D + dims[None, :], mask=(rows[:, None] < L) & (dims[None, :] < D),
                   other=0.0)


@jit
def _key_span(pid_m, L, WINDOW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """The key blocks query block ``pid_m`` sees: causal, and not older than the window."""
    lo = 0
    if WINDOW > 0:
        lo = tl.maximum(pid_m * BM - WINDOW + 1, 0) // BN * BN
    return lo, tl.minimum((pid_m + 1) * BM, L)


@jit
def _attn_fwd(Q, K, V, O, LSE, L, D, scale,
              WINDOW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pid_m = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    base = n * L * D
    rows = pid_m * BM + tl.arange(0, BM)
    dims = tl.arange(0, BD)
    dmask = dims[None, :] < D
    q = _tile(Q + base, rows, dims, L, D)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, BD], tl.float32)
    lo, hi = _key_span(pid_m, L, WINDOW, BM, BN)
    for start in range(lo, hi, BN):
        cols = start + tl.arange(0, BN)
        k = _tile(K + base, cols, dims, L, D)
        v = _tile(V + base, cols, dims, L, D)
        s = _keep(tl.dot(q, tl.trans(k)) * scale, rows, cols, L, WINDOW)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    rmask = rows < L
    tl.store(O + base + rows[:, None] * D + dims[None, :], o.to(O.dtype.element_ty), mask=rmask[:, None] & dmask)
    tl.store(LSE + n * L + rows, m_i + tl.log(l_safe), mask=rmask)


@jit
def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DK, DV, L, D, scale,
                   WINDOW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pid_n = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    base = n * L * D
    cols = pid_n * BN + tl.arange(0, BN)
    dims = tl.arange(0, BD)
    dmask = dims[None, :] < D
    kmask = (cols[:, None] < L) & dmask
    k = _tile(K + base, cols, dims, L, D)
    v = _tile(V + base, cols, dims, L, D)
    dk = tl.zeros([BN, BD], tl.float32)
    dv = tl.zeros([BN, BD], tl.float32)
    lo = pid_n * BN // BM * BM
    hi = L
    if WINDOW > 0:
        hi = tl.minimum(L, (pid_n + 1) * BN + WINDOW - 1)
    for start in range(lo, hi, BM):
        rows = start + tl.arange(0, BM)
        rmask = rows < L
        q = _tile(Q + base, rows, dims, L, D)
        do = _tile(DO + base, rows, dims, L, D)
        lse = tl.load(LSE + n * L + rows, mask=rmask, other=0.0)
        delta = tl.load(DELTA + n * L + rows, mask=rmask, other=0.0)
        s = _keep(tl.dot(q, tl.trans(k)) * scale, rows, cols, L, WINDOW)
        p = tl.exp(s - lse[:, None])                       # [BM, BN]
        dv += tl.dot(tl.trans(p.to(do.dtype)), do)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None]) * scale
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
    tl.store(DK + base + cols[:, None] * D + dims[None, :], dk.to(DK.dtype.element_ty), mask=kmask)
    tl.store(DV + base + cols[:, None] * D + dims[None, :], dv.to(DV.dtype.element_ty), mask=kmask)


@jit
def _attn_bwd_dq(Q, K, V, DO, LSE, DELTA, DQ, L, D, scale,
                 WINDOW: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pid_m = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    base = n * L * D
    rows = pid_m * BM + tl.arange(0, BM)
    dims = tl.arange(0, BD)
    dmask = dims[None, :] < D
    rmask = rows < L
    q = _tile(Q + base, rows, dims, L, D)
    do = _tile(DO + base, rows, dims, L, D)
    lse = tl.load(LSE + n * L + rows, mask=rmask, other=0.0)
    delta = tl.load(DELTA + n * L + rows, mask=rmask, other=0.0)
    dq = tl.zeros([BM, BD], tl.float32)
    lo, hi = _key_span(pid_m, L, WINDOW, BM, BN)
    for start in range(lo, hi, BN):
        cols = start + tl.arange(0, BN)
        k = _tile(K + base, cols, dims, L, D)
        v = _tile(V + base, cols, dims, L, D)
        s = _keep(tl.dot(q, tl.trans(k)) * scale, rows, cols, L, WINDOW)
        p = tl.exp(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None]) * scale
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(DQ + base + rows[:, None] * D + dims[None, :], dq.to(DQ.dtype.element_ty), mask=rmask[:, None] & dmask)


def _config(L: int, D: int) -> dict:
    BD = max(16, next_pow2(D))
    blk = 64 if L >= 64 else max(16, next_pow2(L))
    return pick(dict(BM=blk, BN=blk, BD=BD, num_warps=4, num_stages=2), dict(BM=blk, BN=blk, BD=BD))


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window):
        B, H, L, D = q.shape
        q, k, v = (t.reshape(B * H, L, D).contiguous() for t in (q, k, v))
        o = torch.empty_like(q)
        lse = torch.empty(B * H, L, device=q.device, dtype=torch.float32)
        cfg = _config(L, D)
        scale = 1.0 / math.sqrt(D)
        _attn_fwd[(triton.cdiv(L, cfg["BM"]), B * H)](q, k, v, o, lse, L, D, scale, WINDOW=window or 0, **cfg)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.window, ctx.shape = window, (B, H, L, D)
        return o.view(B, H, L, D)

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        B, H, L, D = ctx.shape
        do = do.reshape(B * H, L, D).contiguous()
        delta = (o.float() * do.float()).sum(-1)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        cfg = _config(L, D)
        scale = 1.0 / math.sqrt(D)
        w = ctx.window or 0
        _attn_bwd_dkdv[(triton.cdiv(L, cfg["BN"]), B * H)](q, k, v, do, lse, delta, dk, dv, L, D, scale,
                                                          WINDOW=w, **cfg)
        _attn_bwd_dq[(triton.cdiv(L, cfg["BM"]), B * H)](q, k, v, do, lse, delta, dq, L, D, scale,
                                                        WINDOW=w, **cfg)
        return dq.view(B, H, L, D), dk.view(B, H, L, D), dv.view(B, H, L, D), None


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     window: int | None = None) -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` (same dtype) -> ``[B, H, L, d]``; under vmap the members fold
    into the batch (one launch)."""
    return vmap_apply(lambda a, b, c: _Attention.apply(a, b, c, window), q, k, v, fold_args=(0, 1, 2))
