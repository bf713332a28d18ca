"""GLA (per-key gates) in Triton, two-level: an inter-chunk state pass and a chunk-parallel
intra-chunk part on tensor cores. Used by :func:`mad_bench.ops.gla.chunk_gla` (through
:func:`mad_bench.ops.gla.triton.chunked_linear_attention`).

Layout and recurrence as :mod:`.triton` (``S_t = diag(e^{g_t}) S_{t-1} + k_t v_t^T``,
``o_t = S_t^T (scale q_t)``). Chunks of ``BT`` steps (64; ``block_size`` overrides), split into
sub-blocks of ``BC = 16`` rows. ``b`` is the inclusive cumulative log gate inside the chunk,
``b_C`` its last row, ``h_n`` the state entering chunk ``n``.

Forward, two launches:

1. ``_state_fwd`` (grid K-blocks x V-blocks x B*H, one sequential walk over the chunks):
   stores ``h_n`` for every chunk (and ``h_N``), and ``b`` (fp32, padded to whole chunks: the
   padding has gate 0, so its ``b`` repeats the last real one and no exponent misbehaves)::

       h_{n+1} = e^{b_C} h_n + (K e^{b_C - b})^T V

2. ``_out_fwd`` (grid V-blocks x chunks x B*H, all independent). For the rows of sub-block
   ``i`` (first row ``s``, ``r = b_{s-1}``), with every exponent ``<= 0``::

       o_i = (Q_i e^{b_i}) h_n + [(Q_i e^{b_i - r}) (K e^{r - b})_{rows < s}^T] V + D_i V_i

   ``D_i`` (the diagonal 16x16 block) is built pairwise, one column at a time
   (``sum_k q_ik k_jk e^{b_ik - b_jk}``): no factorisation through a reference point, so any
   decay strength is exact (the GLA paper's secondary chunking).

Backward, two launches (the ``h_n`` and ``b`` saved by the forward are reused):

3. ``_state_bwd`` (reverse walk): ``dh_n`` = the gradient of the state *after* chunk ``n``::

       dh_{n-1} = e^{b_C} dh_n + (Q e^{b})^T dO       (chunk n's rows)

4. ``_grads`` (grid chunks x B*H, V looped inside): per sub-block ``i`` both as rows (``dq``,
   through ``dA = dO V^T``) and as columns (``dk``, ``dv``; reference ``r' = b`` at the
   sub-block's last row, rows after it scaled by ``e^{b - r'}``), the diagonal block pairwise.
   The gate gradient is chunk-local: with ``x_t = q_t dq_t - k_t dk_t`` (per key)::

       dlog_g_t = sum_{s >= t, same chunk} x_s + sum_V (h_{n+1} * dh_n)

   (``o`` depends on the local ``b`` through ``q e^{b}``, ``k e^{-b}``, ``k e^{b_C - b}`` and the
   carried ``e^{b_C} h_n``; the last two are ``d h_{n+1} / d b_C = h_{n+1}``.)

Inside: fp32, ``tl.dot`` with tf32 for 16-bit inputs (IEEE for fp32 unless torch allows tf32).
``h_n`` is stored in the input dtype (fp32 for fp32 inputs), ``b`` in fp32.

:data:`DOT_OPERANDS` ``= "input"`` casts every ``tl.dot`` operand of 16-bit inputs to the input
dtype (gates and decays still computed in fp32, accumulation in fp32; fp32 inputs unaffected),
as flash-linear-attention does, against the default ``"fp32"`` (the numerics above). It exists
for the A/B measurement of whether fp32 dot operands explain the gap to fla at head dim 128
(``benchmarks/check_gla_gdr.py --dot-operands fp32 input``).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..dispatch import jit, next_pow2, pick, tl, triton
from ..vmap_rules import register_fold

__all__ = ["gla_op", "check_inputs", "dot_operands_mode"]

DOT_OPERAND_MODES = ("fp32", "input")
DOT_OPERANDS = "fp32"  # the A/B switch above; read by each call, passed to its forward and backward


@jit
def _dot(a, b, PREC: tl.constexpr, OPND: tl.constexpr):
    """``a @ b`` with fp32 accumulation, its operands cast to ``OPND`` first (a no-op for fp32)."""
    return tl.dot(a.to(OPND), b.to(OPND), input_precision=PREC)


@jit
def _state_fwd(
    K, V, G, H0, BB, HB, HT,
    s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_gb, s_gh, s_gl,
    H, L, DK, DV, NT,
    HAS_H0: tl.constexpr, STORE_HT: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, OPND: tl.constexpr,
):
    pid_k = tl.program_id(0)
    pid_v = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b_ = bh // H
    h_ = bh % H
    rt = tl.arange(0, BT)
    rk = pid_k * BK + tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    s_mask = mk[:, None] & mv[None, :]
    s_off = rk[:, None] * DV + rv[None, :]
    k_base = K + b_ * s_kb + h_ * s_kh
    v_base = V + b_ * s_vb + h_ * s_vh
    g_base = G + b_ * s_gb + h_ * s_gh
    bb_base = BB + bh * NT * BT * DK
    hb_base = HB + bh * (NT + 1) * DK * DV
    if HAS_H0:
        S = tl.load(H0 + bh * DK * DV + s_off, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    for n in range(NT):
        tl.store(hb_base + n * DK * DV + s_off, S.to(HB.dtype.element_ty), mask=s_mask)
        t = n * BT + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mt[:, None] & mv[None, :],
                    other=0.0).to(tl.float32)
        g = tl.load(g_base + t[:, None] * s_gl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        bc = tl.cumsum(g, axis=0)
        bl = tl.sum(g, axis=0)
        tl.store(bb_base + t[:, None] * DK + rk[None, :], bc, mask=(rt[:, None] + pid_v * BT < BT) & mk[None, :])  # V-block 0 writes b
        kd = k * tl.exp(bl[None, :] - bc)
        S = S * tl.exp(bl)[:, None] + _dot(tl.trans(kd), v, PREC, OPND)
    tl.store(hb_base + NT * DK * DV + s_off, S.to(HB.dtype.element_ty), mask=s_mask)
    if STORE_HT:
        tl.store(HT + bh * DK * DV + s_off, S, mask=s_mask)


@jit
def _diag_scores(q_i, bb_base, k_base, s_kl, tc0, L, DK, rc, rk,
                 BC: tl.constexpr, BK: tl.constexpr, b_i):
    """The diagonal sub-block's scores ``A[r, c] = sum_k q_rk k_ck e^{b_rk - b_ck}`` (c <= r),
    pairwise by column (exponents <= 0 wherever unmasked)."""
    mk = rk < DK
    Ad = tl.zeros([BC, BC], dtype=tl.float32)
    for c in tl.static_range(BC):
        tc = tc0 + c
        k_c = tl.load(k_base + tc * s_kl + rk, mask=mk & (rk * 0 + tc < L), other=0.0).to(tl.float32)
        b_c = tl.load(bb_base + tc * DK + rk, mask=mk, other=0.0)
        e = tl.exp(tl.where((rc >= c)[:, None], b_i - b_c[None, :], float("-inf")))
        col = tl.sum(q_i * k_c[None, :] * e, axis=1)
        Ad = tl.where((rc == c)[None, :], col[:, None], Ad)
    return Ad


@jit
def _out_fwd(
    Q, K, V, BB, HB, O,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl,
    H, L, DK, DV, NT, scale,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, OPND: tl.constexpr,
):
    pid_v = tl.program_id(0)
    n = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b_ = bh // H
    h_ = bh % H
    t0 = n * BT
    rt = tl.arange(0, BT)
    rc = tl.arange(0, BC)
    rk = tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    q_base = Q + b_ * s_qb + h_ * s_qh
    k_base = K + b_ * s_kb + h_ * s_kh
    v_base = V + b_ * s_vb + h_ * s_vh
    bb_base = BB + bh * NT * BT * DK
    o_base = O + bh * L * DV
    hs = tl.load(HB + bh * (NT + 1) * DK * DV + n * DK * DV + rk[:, None] * DV + rv[None, :],
                 mask=mk[:, None] & mv[None, :], other=0.0).to(tl.float32)
    t = t0 + rt
    mt = t < L
    for i in tl.static_range(BT // BC):
        ti = t0 + i * BC + rc
        mi = ti < L
        q_i = tl.load(q_base + ti[:, None] * s_ql + rk[None, :], mask=mi[:, None] & mk[None, :],
                      other=0.0).to(tl.float32) * scale
        b_i = tl.load(bb_base + ti[:, None] * DK + rk[None, :], mask=mk[None, :], other=0.0)
        v_i = tl.load(v_base + ti[:, None] * s_vl + rv[None, :], mask=mi[:, None] & mv[None, :],
                      other=0.0).to(tl.float32)
        o_i = _dot(q_i * tl.exp(b_i), hs, PREC, OPND)
        if i > 0:
            r = tl.load(bb_base + (t0 + i * BC - 1) * DK + rk, mask=mk, other=0.0)
            k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mt[:, None] & mk[None, :],
                        other=0.0).to(tl.float32)
            b = tl.load(bb_base + t[:, None] * DK + rk[None, :], mask=mk[None, :], other=0.0)
            v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mt[:, None] & mv[None, :],
                        other=0.0).to(tl.float32)
            kt = k * tl.exp(tl.where((rt < i * BC)[:, None], r[None, :] - b, float("-inf")))
            A = _dot(q_i * tl.exp(b_i - r[None, :]), tl.trans(kt), PREC, OPND)
            o_i += _dot(A, v, PREC, OPND)
        Ad = _diag_scores(q_i, bb_base, k_base, s_kl, t0 + i * BC, L, DK, rc, rk, BC, BK, b_i)
        o_i += _dot(Ad, v_i, PREC, OPND)
        tl.store(o_base + ti[:, None] * DV + rv[None, :], o_i.to(O.dtype.element_ty),
                 mask=mi[:, None] & mv[None, :])


@jit
def _state_bwd(
    Q, DO, BB, DHT, DHB, DH0,
    s_qb, s_qh, s_ql, s_ob, s_oh, s_ol,
    H, L, DK, DV, NT, scale,
    HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, OPND: tl.constexpr,
):
    pid_k = tl.program_id(0)
    pid_v = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b_ = bh // H
    h_ = bh % H
    rt = tl.arange(0, BT)
    rk = pid_k * BK + tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    s_mask = mk[:, None] & mv[None, :]
    s_off = rk[:, None] * DV + rv[None, :]
    q_base = Q + b_ * s_qb + h_ * s_qh
    do_base = DO + b_ * s_ob + h_ * s_oh
    bb_base = BB + bh * NT * BT * DK
    dhb_base = DHB + bh * NT * DK * DV
    if HAS_DHT:
        dS = tl.load(DHT + bh * DK * DV + s_off, mask=s_mask, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    for i in range(NT):
        n = NT - 1 - i
        tl.store(dhb_base + n * DK * DV + s_off, dS.to(DHB.dtype.element_ty), mask=s_mask)
        t = n * BT + rt
        mt = t < L
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mt[:, None] & mk[None, :],
                    other=0.0).to(tl.float32) * scale
        do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mt[:, None] & mv[None, :],
                     other=0.0).to(tl.float32)
        b = tl.load(bb_base + t[:, None] * DK + rk[None, :], mask=mk[None, :], other=0.0)
        bl = tl.load(bb_base + (n * BT + BT - 1) * DK + rk, mask=mk, other=0.0)
        dS = dS * tl.exp(bl)[:, None] + _dot(tl.trans(q * tl.exp(b)), do, PREC, OPND)
    if STORE_DH0:
        tl.store(DH0 + bh * DK * DV + s_off, dS, mask=s_mask)


@jit
def _grads(
    Q, K, V, DO, BB, HB, DHB, DQ, DK_, DV_, DG,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ob, s_oh, s_ol,
    H, L, DK, DV, NT, scale,
    NEED_DG: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, OPND: tl.constexpr,
):
    n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b_ = bh // H
    h_ = bh % H
    t0 = n * BT
    rt = tl.arange(0, BT)
    rc = tl.arange(0, BC)
    rk = tl.arange(0, BK)
    mk = rk < DK
    t = t0 + rt
    mt = t < L
    mtk = mt[:, None] & mk[None, :]
    q_base = Q + b_ * s_qb + h_ * s_qh
    k_base = K + b_ * s_kb + h_ * s_kh
    v_base = V + b_ * s_vb + h_ * s_vh
    do_base = DO + b_ * s_ob + h_ * s_oh
    bb_base = BB + bh * NT * BT * DK
    hb_base = HB + bh * (NT + 1) * DK * DV + n * DK * DV
    dhb_base = DHB + bh * NT * DK * DV + n * DK * DV
    bl = tl.load(bb_base + (t0 + BT - 1) * DK + rk, mask=mk, other=0.0)
    # dL/db_C per key: sum_V h_{n+1} * dh_n
    R = tl.zeros([BK], dtype=tl.float32)
    if NEED_DG:
        for v0 in range(0, DV, BV):
            rv = v0 + tl.arange(0, BV)
            m2 = mk[:, None] & (rv < DV)[None, :]
            h1 = tl.load(hb_base + DK * DV + rk[:, None] * DV + rv[None, :], mask=m2, other=0.0)
            dh = tl.load(dhb_base + rk[:, None] * DV + rv[None, :], mask=m2, other=0.0)
            R += tl.sum(h1.to(tl.float32) * dh.to(tl.float32), axis=1)
    for ii in tl.static_range(BT // BC):
        i = BT // BC - 1 - ii  # last sub-block first: the gate gradient is a reverse sum
        s = i * BC
        ti = t0 + s + rc
        mi = ti < L
        mik = mi[:, None] & mk[None, :]
        q_i = tl.load(q_base + ti[:, None] * s_ql + rk[None, :], mask=mik, other=0.0).to(tl.float32) * scale
        k_i = tl.load(k_base + ti[:, None] * s_kl + rk[None, :], mask=mik, other=0.0).to(tl.float32)
        b_i = tl.load(bb_base + ti[:, None] * DK + rk[None, :], mask=mk[None, :], other=0.0)
        # rows after sub-block i, scaled to its last row r2 (exponents <= 0)
        r2 = tl.load(bb_base + (t0 + s + BC - 1) * DK + rk, mask=mk, other=0.0)
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mtk, other=0.0).to(tl.float32) * scale
        b = tl.load(bb_base + t[:, None] * DK + rk[None, :], mask=mk[None, :], other=0.0)
        qa = q * tl.exp(tl.where((rt >= s + BC)[:, None], b - r2[None, :], float("-inf")))
        kc = k_i * tl.exp(r2[None, :] - b_i)
        A_col = _dot(qa, tl.trans(kc), PREC, OPND)  # [BT, BC]: A[r, c], r after i
        # defined on every path: Triton 3.6 on Hopper rejects names bound only under `if i > 0`
        r1 = tl.zeros([BK], dtype=tl.float32)
        kb = tl.zeros([BT, BK], dtype=tl.float32)
        if i > 0:
            r1 = tl.load(bb_base + (t0 + s - 1) * DK + rk, mask=mk, other=0.0).to(tl.float32)
            k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mtk, other=0.0).to(tl.float32)
            kb = k * tl.exp(tl.where((rt < s)[:, None], r1[None, :] - b, float("-inf")))
        dA_row = tl.zeros([BC, BT], dtype=tl.float32)  # dA[rows of i, :]
        dA_colT = tl.zeros([BC, BT], dtype=tl.float32)  # dA[:, cols of i]^T
        dAd = tl.zeros([BC, BC], dtype=tl.float32)
        dq_i = tl.zeros([BC, BK], dtype=tl.float32)
        dk_i = tl.zeros([BC, BK], dtype=tl.float32)
        for v0 in range(0, DV, BV):
            rv = v0 + tl.arange(0, BV)
            mv = rv < DV
            m2 = mk[:, None] & mv[None, :]
            v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mt[:, None] & mv[None, :],
                        other=0.0).to(tl.float32)
            do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mt[:, None] & mv[None, :],
                         other=0.0).to(tl.float32)
            v_i = tl.load(v_base + ti[:, None] * s_vl + rv[None, :], mask=mi[:, None] & mv[None, :],
                          other=0.0).to(tl.float32)
            do_i = tl.load(do_base + ti[:, None] * s_ol + rv[None, :], mask=mi[:, None] & mv[None, :],
                           other=0.0).to(tl.float32)
            hs = tl.load(hb_base + rk[:, None] * DV + rv[None, :], mask=m2, other=0.0).to(tl.float32)
            dh = tl.load(dhb_base + rk[:, None] * DV + rv[None, :], mask=m2, other=0.0).to(tl.float32)
            dA_row += _dot(do_i, tl.trans(v), PREC, OPND)
            dA_colT += _dot(v_i, tl.trans(do), PREC, OPND)
            dAd += _dot(do_i, tl.trans(v_i), PREC, OPND)
            dq_i += _dot(do_i, tl.trans(hs), PREC, OPND)
            dk_i += _dot(v_i, tl.trans(dh), PREC, OPND)
        dq_i = dq_i * tl.exp(b_i)
        dk_i = dk_i * tl.exp(bl[None, :] - b_i)
        if i > 0:
            dq_i += _dot(dA_row, kb, PREC, OPND) * tl.exp(b_i - r1[None, :])
        dk_i += _dot(dA_colT, qa, PREC, OPND) * tl.exp(r2[None, :] - b_i)
        # diagonal block, pairwise, one exponential per column for all three:
        # A[r, c] = q_r . k_c e^{b_r - b_c};  dq[r] += dA[r, c] k_c e^{..};  dk[c] += sum_r dA[r, c] q_r e^{..}
        dAd = tl.where(rc[:, None] >= rc[None, :], dAd, 0.0)
        Ad = tl.zeros([BC, BC], dtype=tl.float32)
        for c in tl.static_range(BC):
            tc = t0 + s + c
            k_c = tl.load(k_base + tc * s_kl + rk, mask=mk & (rk * 0 + tc < L), other=0.0).to(tl.float32)
            b_c = tl.load(bb_base + tc * DK + rk, mask=mk, other=0.0)
            e = tl.exp(tl.where((rc >= c)[:, None], b_i - b_c[None, :], float("-inf")))
            ke = k_c[None, :] * e
            colsel = (rc == c)[None, :]
            Ad = tl.where(colsel, tl.sum(q_i * ke, axis=1)[:, None], Ad)
            dAc = tl.sum(tl.where(colsel, dAd, 0.0), axis=1)
            dq_i += dAc[:, None] * ke
            dk_i = tl.where((rc == c)[:, None], tl.sum(dAc[:, None] * q_i * e, axis=0)[None, :] + dk_i, dk_i)
        # dv = A^T dO + (K e^{b_C - b}) dh
        kdec = k_i * tl.exp(bl[None, :] - b_i)
        for v0 in range(0, DV, BV):
            rv = v0 + tl.arange(0, BV)
            mv = rv < DV
            do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mt[:, None] & mv[None, :],
                         other=0.0).to(tl.float32)
            do_i = tl.load(do_base + ti[:, None] * s_ol + rv[None, :], mask=mi[:, None] & mv[None, :],
                           other=0.0).to(tl.float32)
            dh = tl.load(dhb_base + rk[:, None] * DV + rv[None, :], mask=mk[:, None] & mv[None, :],
                         other=0.0).to(tl.float32)
            dv_i = _dot(tl.trans(A_col), do, PREC, OPND)
            dv_i += _dot(tl.trans(Ad), do_i, PREC, OPND)
            dv_i += _dot(kdec, dh, PREC, OPND)
            tl.store(DV_ + bh * L * DV + ti[:, None] * DV + rv[None, :],
                     dv_i.to(DV_.dtype.element_ty), mask=mi[:, None] & mv[None, :])
        tl.store(DQ + bh * L * DK + ti[:, None] * DK + rk[None, :], (dq_i * scale).to(DQ.dtype.element_ty), mask=mik)
        tl.store(DK_ + bh * L * DK + ti[:, None] * DK + rk[None, :], dk_i.to(DK_.dtype.element_ty), mask=mik)
        if NEED_DG:
            x = tl.where(mik, q_i * dq_i - k_i * dk_i, 0.0)
            tot = tl.sum(x, axis=0)
            tl.store(DG + bh * L * DK + ti[:, None] * DK + rk[None, :],
                     R[None, :] + tot[None, :] - tl.cumsum(x, axis=0) + x, mask=mik)
            R += tot


# ----------------------------------------------------------------------------- launch
def _cfg(L: int, DK: int, DV: int, block_size):
    BK = max(16, next_pow2(DK))
    if BK > 256:
        raise ValueError(f"head key dim K={DK} > 256 is not supported by the Triton kernel")
    if block_size is not None:
        if block_size < 16 or block_size & (block_size - 1):
            raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
        BT = block_size
    else:
        BT = min(64, max(16, next_pow2(L)))
    BVf = max(16, next_pow2(DV))
    big = BK >= 128 or BVf >= 128
    gpu = dict(
        BT=BT, BK=BK,
        BKs=min(BK, 64), BVs=min(BVf, 64),  # the state passes' [K, V] block
        BVo=min(BVf, 64),  # the output kernel's V block (its scores are recomputed per block)
        BVg=min(BVf, 64),  # the gradient kernel's V loop step
        warps_state=4, warps_out=8 if big else 4, warps_grad=8 if big else 4,
    )
    # interpreter: fewer, wider programs, but K split over state-pass programs from K > 32
    interp = dict(gpu, BT=block_size or 32, BKs=min(BK, 32), BVs=min(BVf, 32), BVo=min(BVf, 32),
                  BVg=min(BVf, 16))
    return pick(gpu, interp)


def _prec(x) -> str:
    if x.dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def dot_operands_mode() -> str:
    """:data:`DOT_OPERANDS`, checked (read by the caller: the op takes it as an argument)."""
    if DOT_OPERANDS not in DOT_OPERAND_MODES:
        raise ValueError(f"two_level.DOT_OPERANDS must be one of {DOT_OPERAND_MODES}, "
                         f"got {DOT_OPERANDS!r}")
    return DOT_OPERANDS


def _dot_operands(x, mode: str):
    """The ``tl.dot`` operand dtype for inputs like ``x`` under the :data:`DOT_OPERANDS` ``mode``."""
    if mode not in DOT_OPERAND_MODES:
        raise ValueError(f"dot_operands must be one of {DOT_OPERAND_MODES}, got {mode!r}")
    if mode == "input" and x.dtype in (torch.float16, torch.bfloat16):
        return tl.float16 if x.dtype == torch.float16 else tl.bfloat16
    return tl.float32


def _unit(x):
    return x if x.stride(-1) == 1 else x.contiguous()


def _s3(x):
    return x.stride(0), x.stride(1), x.stride(2)


def _warps(cfg, key):
    from ..dispatch import interpreting

    return {} if interpreting() else {"num_warps": cfg[key]}


def _fwd(q, k, v, g, h0, scale, store_ht, block_size, opnd):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    c = _cfg(L, DK, DV, block_size)
    BT = c["BT"]
    NT = triton.cdiv(L, BT)
    dev = q.device
    bb = torch.empty((B * H, NT * BT, DK), device=dev, dtype=torch.float32)
    hb = torch.empty((B * H, NT + 1, DK, DV), device=dev, dtype=q.dtype)
    ht = torch.empty((B, H, DK, DV), device=dev, dtype=torch.float32) if store_ht else None
    prec = _prec(q)
    _state_fwd[(triton.cdiv(DK, c["BKs"]), triton.cdiv(DV, c["BVs"]), B * H)](
        k, v, g, h0, bb, hb, ht, *_s3(k), *_s3(v), *_s3(g), H, L, DK, DV, NT,
        HAS_H0=h0 is not None, STORE_HT=store_ht, BT=BT, BK=c["BKs"], BV=c["BVs"], PREC=prec,
        OPND=opnd, **_warps(c, "warps_state"),
    )
    o = torch.empty((B, H, L, DV), device=dev, dtype=v.dtype)
    _out_fwd[(triton.cdiv(DV, c["BVo"]), NT, B * H)](
        q, k, v, bb, hb, o, *_s3(q), *_s3(k), *_s3(v), H, L, DK, DV, NT, float(scale),
        BT=BT, BC=16, BK=c["BK"], BV=c["BVo"], PREC=prec, OPND=opnd, **_warps(c, "warps_out"),
    )
    return o, ht, bb, hb


def _bwd(q, k, v, bb, hb, do, dht, scale, need_dg, need_dh0, block_size, opnd):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    c = _cfg(L, DK, DV, block_size)
    BT = c["BT"]
    NT = triton.cdiv(L, BT)
    dev = q.device
    prec = _prec(q)
    do = _unit(do)
    dhb = torch.empty((B * H, NT, DK, DV), device=dev, dtype=hb.dtype)
    dh0 = torch.empty((B, H, DK, DV), device=dev, dtype=torch.float32) if need_dh0 else None
    _state_bwd[(triton.cdiv(DK, c["BKs"]), triton.cdiv(DV, c["BVs"]), B * H)](
        q, do, bb, dht, dhb, dh0, *_s3(q), *_s3(do), H, L, DK, DV, NT, float(scale),
        HAS_DHT=dht is not None, STORE_DH0=need_dh0, BT=BT, BK=c["BKs"], BV=c["BVs"], PREC=prec,
        OPND=opnd, **_warps(c, "warps_state"),
    )
    dq = torch.empty((B, H, L, DK), device=dev, dtype=q.dtype)
    dk = torch.empty((B, H, L, DK), device=dev, dtype=k.dtype)
    dv = torch.empty((B, H, L, DV), device=dev, dtype=v.dtype)
    dg = torch.empty((B, H, L, DK), device=dev, dtype=torch.float32) if need_dg else None
    _grads[(NT, B * H)](
        q, k, v, do, bb, hb, dhb, dq, dk, dv, dg,
        *_s3(q), *_s3(k), *_s3(v), *_s3(do), H, L, DK, DV, NT, float(scale),
        NEED_DG=need_dg, BT=BT, BC=16, BK=c["BK"], BV=c["BVg"], PREC=prec, OPND=opnd,
        **_warps(c, "warps_grad"),
    )
    return dq, dk, dv, dg, dh0


def check_inputs(q, k, v, log_g, h0, block_size):
    """What the chunked linear-attention kernels (these and :mod:`.triton`'s) take; raised by
    their ops and by their fake (compile-time) versions alike."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"the Triton kernel takes fp32 / bf16 / fp16, got {name} {t.dtype}")
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k [B, H, L, K] and v [B, H, L, V], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if log_g is not None and tuple(log_g.shape) not in (tuple(q.shape[:3]), tuple(q.shape)):
        raise ValueError(f"log_g must be [B, H, L] or [B, H, L, K] = {list(q.shape)}, got {tuple(log_g.shape)}")
    if h0 is not None and tuple(h0.shape) != (*q.shape[:2], q.shape[-1], v.shape[-1]):
        raise ValueError(f"initial_state must be {[*q.shape[:2], q.shape[-1], v.shape[-1]]}, "
                         f"got {tuple(h0.shape)}")
    if next_pow2(q.shape[-1]) > 256:
        raise ValueError(f"head key dim K={q.shape[-1]} > 256 is not supported by the Triton kernel")
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")


@torch.library.custom_op("mad_bench::gla", mutates_args=())
def gla_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_g: torch.Tensor, h0: Optional[torch.Tensor],
           scale: float, store_ht: bool, block_size: Optional[int], dot_operands: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(o, final state, b, h)`` for ``log_g [B, H, L, K]``: the state empty unless
    ``store_ht``; ``b`` and the chunk states ``h`` are what the backward reads (an op's backward
    sees only its inputs and outputs). ``dot_operands``: a :data:`DOT_OPERAND_MODES` value."""
    check_inputs(q, k, v, log_g, h0, block_size)
    q, k, v, g = (_unit(t) for t in (q, k, v, log_g))
    h0c = h0.contiguous() if h0 is not None else None
    o, ht, bb, hb = _fwd(q, k, v, g, h0c, scale, store_ht, block_size, _dot_operands(q, dot_operands))
    return o, ht if ht is not None else q.new_empty(0, dtype=torch.float32), bb, hb


@gla_op.register_fake
def _(q, k, v, log_g, h0, scale, store_ht, block_size, dot_operands):
    check_inputs(q, k, v, log_g, h0, block_size)
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    BT = _cfg(L, DK, DV, block_size)["BT"]
    NT = triton.cdiv(L, BT)
    f32 = dict(dtype=torch.float32)
    return (q.new_empty((B, H, L, DV), dtype=v.dtype),
            q.new_empty((B, H, DK, DV) if store_ht else (0,), **f32),
            q.new_empty((B * H, NT * BT, DK), **f32), q.new_empty((B * H, NT + 1, DK, DV)))


@torch.library.custom_op("mad_bench::gla_bwd", mutates_args=())
def gla_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bb: torch.Tensor, hb: torch.Tensor,
               do: torch.Tensor, dht: Optional[torch.Tensor], scale: float, need_dg: bool, need_dh0: bool,
               block_size: Optional[int], dot_operands: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dlog_g, d initial state)``, the last two fp32 and empty unless asked for."""
    q, k, v = (_unit(t) for t in (q, k, v))
    dht = dht.contiguous() if dht is not None else None
    dq, dk, dv, dg, dh0 = _bwd(q, k, v, bb, hb, do, dht, scale, need_dg, need_dh0, block_size,
                               _dot_operands(q, dot_operands))
    f32 = dict(dtype=torch.float32)
    return (dq, dk, dv, dg if dg is not None else q.new_empty(0, **f32),
            dh0 if dh0 is not None else q.new_empty(0, **f32))


@gla_bwd_op.register_fake
def _(q, k, v, bb, hb, do, dht, scale, need_dg, need_dh0, block_size, dot_operands):
    # contiguous, as the real op's (a compiled graph lays out what follows by these strides)
    B, H, _, DK = q.shape
    f32 = dict(dtype=torch.float32)
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            q.new_empty(q.shape if need_dg else (0,), **f32),
            q.new_empty((B, H, DK, v.shape[-1]) if need_dh0 else (0,), **f32))


def _setup(ctx, inputs, output):
    q, k, v, log_g, h0, scale, store_ht, block_size, dot_operands = inputs
    _, _, bb, hb = output
    ctx.mark_non_differentiable(bb, hb)
    ctx.set_materialize_grads(False)  # no zero gradients for the saved buffers
    ctx.save_for_backward(q, k, v, bb, hb)
    ctx.scale, ctx.block_size, ctx.dot_operands = scale, block_size, dot_operands
    ctx.g_dtype = log_g.dtype
    ctx.h0_dtype = h0.dtype if h0 is not None else None


def _backward(ctx, do, dht, _dbb, _dhb):
    q, k, v, bb, hb = ctx.saved_tensors
    need_dg = ctx.needs_input_grad[3]
    need_dh0 = ctx.h0_dtype is not None and ctx.needs_input_grad[4]
    if do is None:  # only the final state was used
        do = q.new_zeros((*q.shape[:3], v.shape[-1]), dtype=v.dtype)
    if dht is not None and not dht.numel():
        dht = None
    dq, dk, dv, dg, dh0 = gla_bwd_op(q, k, v, bb, hb, do, dht, ctx.scale, need_dg, need_dh0,
                                     ctx.block_size, ctx.dot_operands)
    return (dq, dk, dv, dg.to(ctx.g_dtype) if need_dg else None,
            dh0.to(ctx.h0_dtype) if need_dh0 else None, None, None, None, None)


gla_op.register_autograd(_backward, setup_context=_setup)
register_fold(gla_op, fold_args=(0, 1, 2, 3, 4))
