"""Causal softmax attention for small heads, in Triton: nothing of size L x L in memory; the
backward recomputes the probabilities from the saved log-sum-exp.

Built for MAD's shapes: heads of 8-32 dims (flash-attention pads a head of 8 to 32, so three
quarters of its tensor-core work is padding) at lengths 32-1024. The head dim is padded to 16
(``tl.dot``'s minimum) by masked loads. An optional ``window`` masks keys older than
``window - 1`` positions (sliding-window attention).

Two paths, both without atomics:

* **short** (``L <= SHORT_MAX_L``, head dim padded to at most 32; MAD's lengths): every key of a
  head fits in registers. The forward (one program per query block) takes each row's softmax
  in one pass over the narrowest of BL / 4, BL / 2 or BL keys (BL = L to a power of two) that
  holds its causal range: no online rescaling. The backward is ONE program per (batch x head)
  that keeps ``dk, dv`` of all its keys in registers while it walks the query blocks, computes
  ``delta = rowsum(o * do)`` itself and each score block's probabilities once for ``dq``,
  ``dk`` and ``dv`` (two exps per score, forward included). It reads q, k, v, do at any strides
  (no copies of the caller's views) and writes o and the gradients with ``[B, L, H, d]``
  memory (as flash-attention does), so ``o.transpose(1, 2).reshape(B, L, H * d)`` is free.
  Launch configs: :func:`_short_config`, ``CONFIG_OVERRIDE``.
* **tiled** (longer sequences): flash-style, online softmax over 64-key blocks; one program per
  (query block, batch x head) forward, skipping blocks outside the causal window; backward
  ``delta`` in torch, then one kernel per key block for ``dk, dv`` (looping over the query
  blocks that see it) and one per query block for ``dq``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..dispatch import interpreting, jit, next_pow2, pick, tl, triton
from ..vmap_rules import register_fold

__all__ = ["attention_triton", "attention_op", "short_path", "CONFIG_OVERRIDE", "SHORT_MAX_L"]

SHORT_MAX_L = 256  # longest sequence of the short path (its backward keeps every key in registers)
LOG2E = 1.4426950408889634

# Launch-config override of the short path for tuning runs (benchmarks/attention.py --short-configs):
# keys BM_FWD, BM_BWD (query rows per block, powers of two >= 16), num_warps_fwd, num_warps_bwd,
# KEY_SPLIT (1 or 2: the backward's keys in one tile or two halves, see _short_bwd).
# Empty: the heuristic of :func:`_short_config`.
CONFIG_OVERRIDE: dict = {}


@jit
def _keep(s, rows, cols, L, WINDOW: tl.constexpr):
    s = s.to(tl.float32)  # inductor passes the scale as fp64: keep the loop-carried types fp32
    ok = (cols[None, :] <= rows[:, None]) & (cols[None, :] < L)
    if WINDOW > 0:
        ok = ok & (rows[:, None] - cols[None, :] < WINDOW)
    return tl.where(ok, s, float("-inf"))


@jit
def _keep_t(st, rows, cols, L, WINDOW: tl.constexpr):
    """:func:`_keep` of transposed scores ``[cols, rows]``."""
    ok = (cols[:, None] <= rows[None, :]) & (cols[:, None] < L)
    if WINDOW > 0:
        ok = ok & (rows[None, :] - cols[:, None] < WINDOW)
    return tl.where(ok, st.to(tl.float32), float("-inf"))


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


@jit
def _strided(ptr, b, h, rows, dims, L, D, sb, sh, sl, sd, ALIGN: tl.constexpr):
    """The ``[rows, dims]`` tile of head ``(b, h)`` of a ``[B, H, L, D]`` tensor at any strides
    (zeros past either end). ``ALIGN > 1`` (see :func:`_align`): ``sd == 1`` and every other
    stride is a multiple of ``ALIGN``; told to the compiler, it loads a row's dims as vectors
    (and pipelines the backward's loads through cp.async) instead of element by element."""
    head = b * sb + h * sh  # 64-bit head offset once; 32-bit offsets within the head
    offs = rows[:, None] * sl + dims[None, :] * sd
    if ALIGN > 1:
        head = tl.multiple_of(head, ALIGN)
        offs = tl.max_contiguous(tl.multiple_of(offs, [1, ALIGN]), [1, ALIGN])
    return tl.load(ptr + head + offs, mask=(rows[:, None] < L) & (dims[None, :] < D), other=0.0)


@jit
def _put_blhd(ptr, x, b, h, rows, dims, H, L, D):
    """Store the ``[rows, dims]`` tile of head ``(b, h)`` into ``[B, L, H, D]`` memory."""
    head = ptr + b * L * H * D + h * D
    tl.store(head + rows[:, None] * (H * D) + dims[None, :], x.to(ptr.dtype.element_ty),
             mask=(rows[:, None] < L) & (dims[None, :] < D))


@jit
def _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd,
                    D: tl.constexpr, WINDOW: tl.constexpr, KW: tl.constexpr, BD: tl.constexpr, ALIGN: tl.constexpr):
    """Query ``rows`` against keys ``0 .. KW - 1`` (all they see): one exp per score, no
    rescaling. Scores are in log2 units (``scale2 = log2(e) / sqrt(d)``, ``exp2``); LSE too."""
    cols = tl.arange(0, KW)
    dims = tl.arange(0, BD)
    q = _strided(Q, b, h, rows, dims, L, D, sqb, sqh, sql, sqd, ALIGN)
    k = _strided(K, b, h, cols, dims, L, D, skb, skh, skl, skd, ALIGN)
    v = _strided(V, b, h, cols, dims, L, D, svb, svh, svl, svd, ALIGN)
    s = _keep(tl.dot(q, tl.trans(k)) * scale2, rows, cols, L, WINDOW)
    m = tl.max(s, 1)
    m = tl.where(m == float("-inf"), 0.0, m)  # padding rows past a window see no key
    p = tl.exp2(s - m[:, None])
    l_i = tl.sum(p, 1)
    l_i = tl.where(l_i == 0.0, 1.0, l_i)
    o = tl.dot(p.to(v.dtype), v) / l_i[:, None]
    _put_blhd(O, o, b, h, rows, dims, H, L, D)
    tl.store(LSE + n * L + rows, m + tl.log2(l_i), mask=rows < L)


@jit
def _short_fwd(Q, K, V, O, LSE, H, L, scale2,
               sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd,
               D: tl.constexpr, WINDOW: tl.constexpr, BM: tl.constexpr, BL: tl.constexpr, BD: tl.constexpr,
               ALIGN: tl.constexpr):
    """One query block against the keys it sees causally, in the narrowest of BL / 4, BL / 2
    and BL keys that holds them (early blocks skip most of the masked scores)."""
    n = tl.program_id(0).to(tl.int64)
    b, h = n // H, n % H
    scale2 = tl.cast(scale2, tl.float32)  # inductor may pass fp64 scalars
    hi = (tl.num_programs(1) - tl.program_id(1)) * BM  # it sees keys < hi; the longest rows start first
    rows = hi - BM + tl.arange(0, BM)
    if BL // 4 >= BM:
        if hi <= BL // 4:
            _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                            sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL // 4, BD, ALIGN)
        elif hi <= BL // 2:
            _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                            sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL // 2, BD, ALIGN)
        else:
            _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                            sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL, BD, ALIGN)
    elif BL // 2 >= BM:
        if hi <= BL // 2:
            _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                            sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL // 2, BD, ALIGN)
        else:
            _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                            sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL, BD, ALIGN)
    else:
        _short_fwd_rows(Q, K, V, O, LSE, n, b, h, rows, H, L, scale2,
                        sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, D, WINDOW, BL, BD, ALIGN)


@jit
def _short_bwd_rows(Q, O, DO, LSE, n, b, h, rows, dims, L,
                    sqb, sqh, sql, sqd, sob, soh, sol, sod, sdb, sdh, sdl, sdd,
                    D: tl.constexpr, ALIGN: tl.constexpr):
    """A query block's q, do, ``delta = rowsum(o * do)`` and LSE (+inf past L: P = 0 there)."""
    q = _strided(Q, b, h, rows, dims, L, D, sqb, sqh, sql, sqd, ALIGN)
    do = _strided(DO, b, h, rows, dims, L, D, sdb, sdh, sdl, sdd, ALIGN)
    o = _strided(O, b, h, rows, dims, L, D, sob, soh, sol, sod, ALIGN)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    lse = tl.load(LSE + n * L + rows, mask=rows < L, other=float("inf"))
    return q, do, delta, lse


@jit
def _short_bwd_keys(k, v, dk, dv, q, do, delta, lse, rows, cols, L, scale2, scale, WINDOW: tl.constexpr):
    """One query block against the key tile ``k, v`` (positions ``cols``), key-major: scores as
    ``[keys, queries]``, so k and v are the A operands of their dots (split across the warps,
    not copied whole into each). P once per score feeds dv, dk and the block's dq (returned)."""
    pt = tl.exp2(_keep_t(tl.dot(k, tl.trans(q)) * scale2, rows, cols, L, WINDOW) - lse[None, :])
    dv += tl.dot(pt.to(do.dtype), do)
    dst = pt * (tl.dot(v, tl.trans(do)) - delta[None, :]) * scale                  # dS^T
    dk += tl.dot(dst.to(q.dtype), q)
    return dk, dv, tl.dot(tl.trans(dst.to(k.dtype)), k)


@jit
def _short_bwd(Q, K, V, O, DO, LSE, DQ, DK, DV, H, L, scale2, scale,
               sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd,
               sob, soh, sol, sod, sdb, sdh, sdl, sdd,
               D: tl.constexpr, WINDOW: tl.constexpr, BM: tl.constexpr, BL: tl.constexpr, BD: tl.constexpr,
               ALIGN: tl.constexpr, KEY_SPLIT: tl.constexpr):
    """All of one head's backward: ``dk, dv`` of every key stay in registers while the program
    walks its query blocks; each block's dq is complete when the block is done. ``KEY_SPLIT``
    2 (BL / 2 holds a query block): the keys are two halves, query blocks before BL / 2 see
    only the first (a quarter of the scores skipped), later ones both (more registers)."""
    n = tl.program_id(0).to(tl.int64)
    b, h = n // H, n % H
    dims = tl.arange(0, BD)
    scale2, scale = tl.cast(scale2, tl.float32), tl.cast(scale, tl.float32)  # inductor may pass fp64
    if KEY_SPLIT == 2:
        HB: tl.constexpr = BL // 2
        c0 = tl.arange(0, HB)
        c1 = HB + tl.arange(0, HB)
        k0 = _strided(K, b, h, c0, dims, L, D, skb, skh, skl, skd, ALIGN)
        v0 = _strided(V, b, h, c0, dims, L, D, svb, svh, svl, svd, ALIGN)
        k1 = _strided(K, b, h, c1, dims, L, D, skb, skh, skl, skd, ALIGN)
        v1 = _strided(V, b, h, c1, dims, L, D, svb, svh, svl, svd, ALIGN)
        dk0 = tl.zeros([HB, BD], tl.float32)
        dv0 = tl.zeros([HB, BD], tl.float32)
        dk1 = tl.zeros([HB, BD], tl.float32)
        dv1 = tl.zeros([HB, BD], tl.float32)
        for start in range(0, tl.minimum(L, HB), BM):
            rows = start + tl.arange(0, BM)
            q, do, delta, lse = _short_bwd_rows(Q, O, DO, LSE, n, b, h, rows, dims, L, sqb, sqh, sql, sqd,
                                                sob, soh, sol, sod, sdb, sdh, sdl, sdd, D, ALIGN)
            dk0, dv0, dq = _short_bwd_keys(k0, v0, dk0, dv0, q, do, delta, lse, rows, c0, L, scale2, scale, WINDOW)
            _put_blhd(DQ, dq, b, h, rows, dims, H, L, D)
        for start in range(HB, L, BM):
            rows = start + tl.arange(0, BM)
            q, do, delta, lse = _short_bwd_rows(Q, O, DO, LSE, n, b, h, rows, dims, L, sqb, sqh, sql, sqd,
                                                sob, soh, sol, sod, sdb, sdh, sdl, sdd, D, ALIGN)
            dk0, dv0, dq0 = _short_bwd_keys(k0, v0, dk0, dv0, q, do, delta, lse, rows, c0, L, scale2, scale, WINDOW)
            dk1, dv1, dq1 = _short_bwd_keys(k1, v1, dk1, dv1, q, do, delta, lse, rows, c1, L, scale2, scale, WINDOW)
            _put_blhd(DQ, dq0 + dq1, b, h, rows, dims, H, L, D)
        _put_blhd(DK, dk0, b, h, c0, dims, H, L, D)
        _put_blhd(DV, dv0, b, h, c0, dims, H, L, D)
        _put_blhd(DK, dk1, b, h, c1, dims, H, L, D)
        _put_blhd(DV, dv1, b, h, c1, dims, H, L, D)
    else:
        cols = tl.arange(0, BL)
        k = _strided(K, b, h, cols, dims, L, D, skb, skh, skl, skd, ALIGN)
        v = _strided(V, b, h, cols, dims, L, D, svb, svh, svl, svd, ALIGN)
        dk = tl.zeros([BL, BD], tl.float32)
        dv = tl.zeros([BL, BD], tl.float32)
        for start in range(0, L, BM):
            rows = start + tl.arange(0, BM)
            q, do, delta, lse = _short_bwd_rows(Q, O, DO, LSE, n, b, h, rows, dims, L, sqb, sqh, sql, sqd,
                                                sob, soh, sol, sod, sdb, sdh, sdl, sdd, D, ALIGN)
            dk, dv, dq = _short_bwd_keys(k, v, dk, dv, q, do, delta, lse, rows, cols, L, scale2, scale, WINDOW)
            _put_blhd(DQ, dq, b, h, rows, dims, H, L, D)
        _put_blhd(DK, dk, b, h, cols, dims, H, L, D)
        _put_blhd(DV, dv, b, h, cols, dims, H, L, D)


def _short_config(L: int, D: int) -> dict:
    """Query blocks, warps and key split of the short path (``CONFIG_OVERRIDE`` replaces any).
    Forward: 64 queries a program, 4 warps up to a 64 x 128 score tile, 8 beyond. Backward:
    16 queries a step at 4 warps up to BL = 128 (the best of the H200 sweep at L 128, d 8:
    0.506 ms fwd+bwd against 0.624 for 32 queries at 8 warps); beyond, 32 queries at 8 warps
    (not measured; [BL, 32] tiles of scores, P and dS cost 32 registers each per 128 keys at 4
    warps); keys in one tile. On sm_90 at L 128, d 8 (compiled on the CPU): forward 96
    registers a thread; KEY_SPLIT 2 skips a quarter of the backward's scores but takes 168
    (104 at 4 warps with 16-query blocks)."""
    BL = max(16, next_pow2(L))
    small = BL <= 128
    cfg = dict(BL=BL, BD=max(16, next_pow2(D)), BM_FWD=min(BL, 64), BM_BWD=16 if small else min(BL, 32),
               KEY_SPLIT=1)
    if small:
        cfg["num_warps_bwd"] = 4
    cfg.update(CONFIG_OVERRIDE)
    for key in ("BM_FWD", "BM_BWD"):
        bm = cfg[key]
        if not isinstance(bm, int) or bm < 16 or bm & (bm - 1):
            raise ValueError(f"attention CONFIG_OVERRIDE: {key} must be a power of two >= 16; got {bm!r}")
        cfg[key] = min(bm, BL)
    if cfg["KEY_SPLIT"] not in (1, 2):
        raise ValueError(f"attention CONFIG_OVERRIDE: KEY_SPLIT must be 1 or 2; got {cfg['KEY_SPLIT']!r}")
    if BL // 2 < cfg["BM_BWD"]:
        cfg["KEY_SPLIT"] = 1  # no query block fits in the first half
    cfg.setdefault("num_warps_fwd", 4 if cfg["BM_FWD"] * BL <= 8192 else 8)
    cfg.setdefault("num_warps_bwd", 8 if BL >= 128 else 4)
    if interpreting():
        del cfg["num_warps_fwd"], cfg["num_warps_bwd"]
    return cfg


def _launch(cfg: dict, side: str) -> dict:
    out = dict(BL=cfg["BL"], BD=cfg["BD"], BM=cfg[f"BM_{side.upper()}"])
    if side == "bwd":
        out["KEY_SPLIT"] = cfg["KEY_SPLIT"]
    if f"num_warps_{side}" in cfg:
        out["num_warps"] = cfg[f"num_warps_{side}"]
    return out


def _strides(t: torch.Tensor) -> tuple:
    return tuple(t.stride())


def _align(*ts: torch.Tensor) -> int:
    """The ``ALIGN`` of :func:`_strided` for these tensors: the largest power of two up to 8
    dividing all their strides but the last, where every last stride is 1; else 1."""
    if any(t.stride(-1) != 1 for t in ts):
        return 1
    g = math.gcd(8, *(s for t in ts for s in t.stride()[:-1]))
    return g & -g  # its lowest set bit: a power of two


def _blhd(B: int, H: int, L: int, D: int, like: torch.Tensor) -> torch.Tensor:
    """An empty ``[B, H, L, D]`` tensor with ``[B, L, H, D]`` memory."""
    return torch.empty(B, L, H, D, device=like.device, dtype=like.dtype).transpose(1, 2)


def short_attention_fwd(q, k, v, window: int):
    """The short path's forward: ``(o, lse)``, o with ``[B, L, H, d]`` memory, lse ``[B * H, L]`` fp32."""
    B, H, L, D = q.shape
    cfg = _short_config(L, D)
    o = _blhd(B, H, L, D, q)
    lse = torch.empty(B * H, L, device=q.device, dtype=torch.float32)
    scale2 = LOG2E / math.sqrt(D)
    _short_fwd[(B * H, triton.cdiv(L, cfg["BM_FWD"]))](
        q, k, v, o, lse, H, L, scale2, *_strides(q), *_strides(k), *_strides(v),
        D=D, WINDOW=window, ALIGN=_align(q, k, v), **_launch(cfg, "fwd"))
    return o, lse


def short_attention_bwd(q, k, v, o, lse, do, window: int):
    """The short path's backward: ``(dq, dk, dv)`` with ``[B, L, H, d]`` memory."""
    B, H, L, D = q.shape
    cfg = _short_config(L, D)
    dq, dk, dv = (_blhd(B, H, L, D, t) for t in (q, k, v))
    _short_bwd[(B * H,)](
        q, k, v, o, do, lse, dq, dk, dv, H, L, LOG2E / math.sqrt(D), 1.0 / math.sqrt(D),
        *_strides(q), *_strides(k), *_strides(v), *_strides(o), *_strides(do),
        D=D, WINDOW=window, ALIGN=_align(q, k, v, o, do), **_launch(cfg, "bwd"))
    return dq, dk, dv


def _rows(t, B, H, L, D):
    return t.reshape(B * H, L, D).contiguous()


def tiled_attention_fwd(q, k, v, window: int):
    """The tiled path's forward: ``(o, lse)``, o contiguous, lse ``[B * H, L]`` fp32."""
    B, H, L, D = q.shape
    q, k, v = (_rows(t, B, H, L, D) for t in (q, k, v))
    o = torch.empty_like(q)
    lse = torch.empty(B * H, L, device=q.device, dtype=torch.float32)
    cfg = _config(L, D)
    scale = 1.0 / math.sqrt(D)
    _attn_fwd[(triton.cdiv(L, cfg["BM"]), B * H)](q, k, v, o, lse, L, D, scale, WINDOW=window, **cfg)
    return o.view(B, H, L, D), lse


def tiled_attention_bwd(q, k, v, o, lse, do, window: int):
    """The tiled path's backward: ``(dq, dk, dv)``, contiguous."""
    B, H, L, D = q.shape
    q, k, v, o, do = (_rows(t, B, H, L, D) for t in (q, k, v, o, do))
    delta = (o.float() * do.float()).sum(-1)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    cfg = _config(L, D)
    scale = 1.0 / math.sqrt(D)
    _attn_bwd_dkdv[(triton.cdiv(L, cfg["BN"]), B * H)](q, k, v, do, lse, delta, dk, dv, L, D, scale,
                                                      WINDOW=window, **cfg)
    _attn_bwd_dq[(triton.cdiv(L, cfg["BM"]), B * H)](q, k, v, do, lse, delta, dq, L, D, scale,
                                                    WINDOW=window, **cfg)
    return dq.view(B, H, L, D), dk.view(B, H, L, D), dv.view(B, H, L, D)


def _check(q, k, v, window, short):
    L, D = q.shape[-2:]
    if short and not short_path(L, D):
        raise ValueError(f"short attention path needs L <= {SHORT_MAX_L} and head dim <= 32; got L={L}, d={D}")
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape or not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must be [B, H, L, d] of one shape and dtype; got {tuple(q.shape)} {q.dtype}, "
                         f"{tuple(k.shape)} {k.dtype}, {tuple(v.shape)} {v.dtype}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")


@torch.library.custom_op("mad_bench::attention", mutates_args=())
def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: Optional[int],
                 short: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o, lse)`` of the short or the tiled path (the backward reads the log-sum-exp)."""
    _check(q, k, v, window, short)
    return (short_attention_fwd if short else tiled_attention_fwd)(q, k, v, window or 0)


@attention_op.register_fake
def _(q, k, v, window, short):
    _check(q, k, v, window, short)
    B, H, L, D = q.shape
    o = _blhd(B, H, L, D, q) if short else q.new_empty(q.shape)
    return o, q.new_empty((B * H, L), dtype=torch.float32)


@torch.library.custom_op("mad_bench::attention_bwd", mutates_args=())
def attention_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
                     do: torch.Tensor, window: Optional[int],
                     short: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (short_attention_bwd if short else tiled_attention_bwd)(q, k, v, o, lse, do, window or 0)


@attention_bwd_op.register_fake
def _(q, k, v, o, lse, do, window, short):
    B, H, L, D = q.shape
    if short:
        return tuple(_blhd(B, H, L, D, t) for t in (q, k, v))
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup(ctx, inputs, output):
    q, k, v, window, short = inputs
    ctx.save_for_backward(q, k, v, *output)
    ctx.window, ctx.short = window, short
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, do, _):
    return (*attention_bwd_op(*ctx.saved_tensors, do, ctx.window, ctx.short), None, None)


attention_op.register_autograd(_backward, setup_context=_setup)
register_fold(attention_op, fold_args=(0, 1, 2))


def short_path(L: int, D: int) -> bool:
    """True where the short path runs: ``L <= SHORT_MAX_L`` and a head of at most 32 dims."""
    return L <= SHORT_MAX_L and D <= 32


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     window: int | None = None, short: bool | None = None) -> torch.Tensor:
    """``q, k, v [B, H, L, d]`` (same dtype) -> ``[B, H, L, d]``; under vmap the members fold
    into the batch (one launch). ``short`` picks the path (default: :func:`short_path`); the
    short path takes q, k, v at any strides and returns o with ``[B, L, H, d]`` memory."""
    if short is None:
        short = short_path(q.shape[-2], q.shape[-1])
    return attention_op(q, k, v, window, short)[0]
