"""The gated delta rule in Triton, forward and backward (layout and recurrence as in ``reference``).

Two kernel pairs, both one program per (batch*head, block of BV value columns) with a
``[K, BV]`` state in registers (the value columns evolve independently, so V splits across
programs; ``dq``, ``dk``, ``dbeta``, ``dlog_g`` are per-V-block fp32 partials summed by torch).
Per step ``t``::

    S' = g_t S_{t-1};   e_t = v_t - S'^T k_t;   S_t = S' + beta_t k_t e_t^T;   o_t = scale S_t^T q_t

**Chunked (default)**, the WY / UT form of Gated DeltaNet (Yang et al. 2024), per chunk of BT
steps (64) with ``b`` the chunk's cumulative log decay, ``Gamma = e^b``, ``D_ti = e^{b_t - b_i}``
(``i <= t``), ``S_0`` the chunk's entering state. The errors of the whole chunk solve a unit lower
triangular system (beta on the column side, so no division by beta is ever needed)::

    (I + A) E = V - diag(Gamma) K S_0,     A_ti = D_ti (k_t . k_i) beta_i   (i < t)
    O   = diag(Gamma) Q S_0 + (Q K^T . D) diag(beta) E
    S_C = Gamma_C S_0 + (diag(e^{b_C - b}) K)^T diag(beta) E

``A`` is nilpotent, so ``(I + A)^-1 = (I - A)(I + A^2)(I + A^4)...``: log2(BT) - 1 squarings on
tensor cores instead of a row-by-row substitution (the solve's matmuls use tf32x3 for 16-bit
inputs, IEEE for fp32), all chunks in parallel in their own launch (``_gdr_prep_kernel``, fp32
``T`` per chunk, kept for the backward), so that the sequential passes over the chunks carry only
a few matmuls per chunk. All exponents are ``<= 0``. The forward stores ``E`` and each chunk's
``S_0``; the backward walks the chunks in reverse with ``dS`` in registers and applies (``W = diag(beta) E``, ``Kd = diag(e^{b_C - b}) K``)::

    dW = (QK^T.D)^T dO + Kd dS_C;   dR = T^T diag(beta) dW;   dA = -dR E^T (strictly lower)
    dV = dR;   dS_0 = Gamma_C dS_C + (Gamma Q)^T dO - (Gamma K)^T dR

and the gate gradient chunk-locally (the sum over later steps of the chunk of ``dL/db`` plus
``dL/db_C``; every ``D`` factor contributes its row sum minus its column sum).

**Recurrent** (``chunked=False``): step by step; the forward stores ``e_t`` and the state every
CK steps, the backward recomputes each block's ``S'`` from its checkpoint into a scratch buffer
and runs the reverse recurrence::

    dq = scale S_t do;   dS += scale q do^T;   dw = dS^T k;   dbeta = dw . e;   de = beta dw
    dk = beta dS e - S' de;   dv = de;   dS' = dS - k de^T;   dlog_g = <dS', S'>;   dS_{t-1} = g dS'
"""
from __future__ import annotations

from typing import Optional

import torch

from ..dispatch import jit, next_pow2, pick, state_block_config, tl, triton
from ..vmap_rules import register_fold

__all__ = ["gated_delta_rule_op", "gated_delta_rule_triton"]

CK = 32  # steps between the forward's state checkpoints (= the backward's recompute block)


@jit
def _program(H, DK, DV, BK: tl.constexpr, BV: tl.constexpr):
    """This program's (batch*head, value block): indices, masks and state offsets."""
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    bh = pid_bh.to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < DK
    vv = pid_v * BV + tl.arange(0, BV)
    vm = vv < DV
    m2 = km[:, None] & vm[None, :]
    st_off = kk[:, None] * DV + vv[None, :]
    return pid_v, b, h, bh, kk, km, vv, vm, m2, st_off


@jit
def _gdr_fwd_kernel(
    Q, K, V, BETA, LOGG, S0, O, ERR, CKPT, SFIN,
    L, H, DK, DV, NCK, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_vb, s_vh, s_vl, s_vv,
    s_bb, s_bh, s_bl, s_gb, s_gh, s_gl, s_ob, s_oh, s_ol, s_ov,
    HAS_S0: tl.constexpr, CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    pid_v, b, h, bh, kk, km, vv, vm, m2, st_off = _program(H, DK, DV, BK, BV)
    if HAS_S0:
        S = tl.load(S0 + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    qp = Q + b * s_qb + h * s_qh + kk * s_qk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    vp = V + b * s_vb + h * s_vh + vv * s_vv
    bp = BETA + b * s_bb + h * s_bh
    gp = LOGG + b * s_gb + h * s_gh
    op = O + b * s_ob + h * s_oh + vv * s_ov
    ep = ERR + bh * L * DV + vv
    cp = CKPT + bh * NCK * DK * DV + st_off
    for t in range(L):
        if t % CK == 0:
            tl.store(cp + (t // CK) * DK * DV, S, mask=m2)
        k_t = tl.load(kp + t * s_kl, mask=km, other=0.0).to(tl.float32)
        v_t = tl.load(vp + t * s_vl, mask=vm, other=0.0).to(tl.float32)
        q_t = tl.load(qp + t * s_ql, mask=km, other=0.0).to(tl.float32)
        b_t = tl.load(bp + t * s_bl).to(tl.float32)
        g_t = tl.exp(tl.load(gp + t * s_gl).to(tl.float32))
        S = S * g_t
        e = v_t - tl.sum(S * k_t[:, None], axis=0)
        tl.store(ep + t * DV, e, mask=vm)
        S += (b_t * k_t)[:, None] * e[None, :]
        o = tl.sum(S * q_t[:, None], axis=0) * scale
        tl.store(op + t * s_ol, o.to(O.dtype.element_ty), mask=vm)
    tl.store(SFIN + bh * DK * DV + st_off, S, mask=m2)


@jit
def _gdr_prep_kernel(
    K, BETA, LOGG, TB, L, H, DK, NT,
    s_kb, s_kh, s_kl, s_kk, s_bb, s_bh, s_bl, s_gb, s_gh, s_gl,
    BT: tl.constexpr, LOG2BT: tl.constexpr, BK: tl.constexpr, SPREC: tl.constexpr,
):
    """Chunk-parallel: each chunk's ``T = (I + A)^-1`` (fp32, ``[BT, BT]``), so that the
    sequential state passes carry no inverse in their dependency chain."""
    n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    rt = tl.arange(0, BT)
    kk = tl.arange(0, BK)
    t = n * BT + rt
    mt = t < L
    k = tl.load(K + b * s_kb + h * s_kh + t[:, None] * s_kl + kk[None, :] * s_kk,
                mask=mt[:, None] & (kk < DK)[None, :], other=0.0).to(tl.float32)
    beta = tl.load(BETA + b * s_bb + h * s_bh + t * s_bl, mask=mt, other=0.0).to(tl.float32)
    g = tl.load(LOGG + b * s_gb + h * s_gh + t * s_gl, mask=mt, other=0.0).to(tl.float32)
    bc = tl.cumsum(g, axis=0)
    strict = rt[:, None] > rt[None, :]
    D = tl.exp(tl.where(strict, bc[:, None] - bc[None, :], float("-inf")))
    # A nilpotent: (I + A)^-1 = (I - A)(I + A^2)(I + A^4)... (LOG2BT factors)
    P = -tl.where(strict, tl.dot(k, tl.trans(k), input_precision=SPREC) * D * beta[None, :], 0.0)
    T = tl.where(rt[:, None] == rt[None, :], 1.0, 0.0) + P
    for _ in tl.static_range(LOG2BT - 1):
        P = tl.dot(P, P, input_precision=SPREC)
        T = T + tl.dot(T, P, input_precision=SPREC)
    tl.store(TB + (bh * NT + n) * BT * BT + rt[:, None] * BT + rt[None, :], T)


@jit
def _gdr_chunk_fwd_kernel(
    Q, K, V, BETA, LOGG, TB, S0, O, ERR, CKPT, SFIN,
    L, H, DK, DV, NT, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_vb, s_vh, s_vl, s_vv,
    s_bb, s_bh, s_bl, s_gb, s_gh, s_gl, s_ob, s_oh, s_ol, s_ov,
    HAS_S0: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr,
):
    """Chunked forward (WY / UT form, see the module doc): per chunk of BT steps, with the
    chunk's inverse T from ``_gdr_prep_kernel``, tensor-core matmuls; the state [K, BV] stays
    in registers."""
    pid_v, b, h, bh, kk, km, vv, vm, m2, st_off = _program(H, DK, DV, BK, BV)
    if HAS_S0:
        S = tl.load(S0 + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    rt = tl.arange(0, BT)
    causal = rt[:, None] >= rt[None, :]
    qp = Q + b * s_qb + h * s_qh + kk[None, :] * s_qk
    kp = K + b * s_kb + h * s_kh + kk[None, :] * s_kk
    vp = V + b * s_vb + h * s_vh + vv[None, :] * s_vv
    bp = BETA + b * s_bb + h * s_bh
    gp = LOGG + b * s_gb + h * s_gh
    op = O + b * s_ob + h * s_oh + vv[None, :] * s_ov
    ep = ERR + bh * L * DV + vv[None, :]
    cp = CKPT + bh * NT * DK * DV + st_off
    for n in range(NT):
        tl.store(cp + n * DK * DV, S, mask=m2)
        t = n * BT + rt
        mt = t < L
        mtk = mt[:, None] & km[None, :]
        mtv = mt[:, None] & vm[None, :]
        k = tl.load(kp + t[:, None] * s_kl, mask=mtk, other=0.0).to(tl.float32)
        q = tl.load(qp + t[:, None] * s_ql, mask=mtk, other=0.0).to(tl.float32) * scale
        v = tl.load(vp + t[:, None] * s_vl, mask=mtv, other=0.0).to(tl.float32)
        beta = tl.load(bp + t * s_bl, mask=mt, other=0.0).to(tl.float32)
        g = tl.load(gp + t * s_gl, mask=mt, other=0.0).to(tl.float32)
        bc = tl.cumsum(g, axis=0)
        bl = tl.sum(g, axis=0)
        D = tl.exp(tl.where(causal, bc[:, None] - bc[None, :], float("-inf")))
        T = tl.load(TB + (bh * NT + n) * BT * BT + rt[:, None] * BT + rt[None, :])
        # e_t = v_t - S'_t^T k_t for every step of the chunk at once
        e = tl.dot(T, v - tl.dot(k * tl.exp(bc)[:, None], S, input_precision=SPREC),
                   input_precision=SPREC)
        tl.store(ep + t[:, None] * DV, e, mask=mtv)
        Aqk = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC) * D, 0.0) * beta[None, :]
        o = tl.dot(q * tl.exp(bc)[:, None], S, input_precision=PREC) + tl.dot(Aqk, e, input_precision=PREC)
        tl.store(op + t[:, None] * s_ol, o.to(O.dtype.element_ty), mask=mtv)
        kd = k * (beta * tl.exp(bl - bc))[:, None]
        S = S * tl.exp(bl) + tl.dot(tl.trans(kd), e, input_precision=PREC)
    tl.store(SFIN + bh * DK * DV + st_off, S, mask=m2)


@jit
def _gdr_chunk_bwd_kernel(
    Q, K, BETA, LOGG, TB, DO, DSFIN, ERR, CKPT,
    DQ_P, DK_P, DV_, DBETA_P, DG_P, DS0,
    L, H, DK, DV, NT, BH, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_bb, s_bh, s_bl, s_gb, s_gh, s_gl,
    s_ob, s_oh, s_ol, s_ov, s_dvb, s_dvh, s_dvl, s_dvv,
    HAS_DSFIN: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr,
):
    """Chunked backward, reverse over the chunks with dS [K, BV] in registers (module doc).
    ``dq``, ``dk``, ``dbeta``, ``dlog_g`` are this value block's partial sums."""
    pid_v, b, h, bh, kk, km, vv, vm, m2, st_off = _program(H, DK, DV, BK, BV)
    if HAS_DSFIN:
        dS = tl.load(DSFIN + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    rt = tl.arange(0, BT)
    causal = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    qp = Q + b * s_qb + h * s_qh + kk[None, :] * s_qk
    kp = K + b * s_kb + h * s_kh + kk[None, :] * s_kk
    bp = BETA + b * s_bb + h * s_bh
    gp = LOGG + b * s_gb + h * s_gh
    dop = DO + b * s_ob + h * s_oh + vv[None, :] * s_ov
    ep = ERR + bh * L * DV + vv[None, :]
    cp = CKPT + bh * NT * DK * DV + st_off
    part = pid_v.to(tl.int64) * BH + bh
    dqp = DQ_P + part * L * DK + kk[None, :]
    dkp = DK_P + part * L * DK + kk[None, :]
    dbp = DBETA_P + part * L
    dgp = DG_P + part * L
    dvp = DV_ + b * s_dvb + h * s_dvh + vv[None, :] * s_dvv
    for i in range(NT):
        n = NT - 1 - i
        t = n * BT + rt
        mt = t < L
        mtk = mt[:, None] & km[None, :]
        mtv = mt[:, None] & vm[None, :]
        S0 = tl.load(cp + n * DK * DV, mask=m2, other=0.0)
        k = tl.load(kp + t[:, None] * s_kl, mask=mtk, other=0.0).to(tl.float32)
        q = tl.load(qp + t[:, None] * s_ql, mask=mtk, other=0.0).to(tl.float32) * scale
        beta = tl.load(bp + t * s_bl, mask=mt, other=0.0).to(tl.float32)
        g = tl.load(gp + t * s_gl, mask=mt, other=0.0).to(tl.float32)
        e = tl.load(ep + t[:, None] * DV, mask=mtv, other=0.0)
        do = tl.load(dop + t[:, None] * s_ol, mask=mtv, other=0.0).to(tl.float32)
        bc = tl.cumsum(g, axis=0)
        bl = tl.sum(g, axis=0)
        gam = tl.exp(bc)
        D = tl.exp(tl.where(causal, bc[:, None] - bc[None, :], float("-inf")))
        KKD = tl.where(strict, tl.dot(k, tl.trans(k), input_precision=SPREC) * D, 0.0)
        Ap = KKD * beta[None, :]
        T = tl.load(TB + (bh * NT + n) * BT * BT + rt[:, None] * BT + rt[None, :])
        W = e * beta[:, None]
        QKD = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC) * D, 0.0)
        kdec = tl.exp(bl - bc)
        Kd = k * kdec[:, None]
        dW = tl.dot(tl.trans(QKD), do, input_precision=PREC) + tl.dot(Kd, dS, input_precision=PREC)
        dAq = tl.where(causal, tl.dot(do, tl.trans(W), input_precision=PREC), 0.0)
        dR = tl.dot(tl.trans(T), dW * beta[:, None], input_precision=SPREC)
        dAp = -tl.where(strict, tl.dot(dR, tl.trans(e), input_precision=SPREC), 0.0)
        KS = tl.dot(k, S0, input_precision=PREC)
        dKd = tl.dot(W, tl.trans(dS), input_precision=PREC)
        dqi = tl.dot(do, tl.trans(S0), input_precision=PREC) * gam[:, None]
        dAqD = dAq * D
        dq = dqi + tl.dot(dAqD, k, input_precision=PREC)
        dKK = dAp * D * beta[None, :]
        dk = tl.dot(tl.trans(dAqD), q, input_precision=PREC) \
            + tl.dot(dKK, k, input_precision=PREC) + tl.dot(tl.trans(dKK), k, input_precision=PREC) \
            - tl.dot(dR, tl.trans(S0), input_precision=PREC) * gam[:, None] + dKd * kdec[:, None]
        db = tl.sum(dW * e, axis=1) + tl.sum(dAp * KKD, axis=0)
        Gq = dAq * QKD
        Gk = dAp * Ap
        kdk = tl.sum(Kd * dKd, axis=1)
        x = tl.sum(q * dqi, axis=1) - tl.sum(dR * KS, axis=1) * gam - kdk \
            + tl.sum(Gq, axis=1) - tl.sum(Gq, axis=0) + tl.sum(Gk, axis=1) - tl.sum(Gk, axis=0)
        x = tl.where(mt, x, 0.0)
        dbl = tl.sum(kdk, axis=0) + tl.exp(bl) * tl.sum(tl.sum(dS * S0, axis=1), axis=0)
        dg = tl.sum(x, axis=0) - tl.cumsum(x, axis=0) + x + dbl
        tl.store(dqp + t[:, None] * DK, dq * scale, mask=mtk)
        tl.store(dkp + t[:, None] * DK, dk, mask=mtk)
        tl.store(dvp + t[:, None] * s_dvl, dR.to(DV_.dtype.element_ty), mask=mtv)
        tl.store(dbp + t, db, mask=mt)
        tl.store(dgp + t, dg, mask=mt)
        dS = dS * tl.exp(bl) + tl.dot(tl.trans(q * gam[:, None]), do, input_precision=PREC) \
            - tl.dot(tl.trans(k * gam[:, None]), dR, input_precision=PREC)
    tl.store(DS0 + bh * DK * DV + st_off, dS, mask=m2)


@jit
def _gdr_bwd_kernel(
    Q, K, BETA, LOGG, DO, DSFIN, ERR, CKPT, SCRATCH,
    DQ_P, DK_P, DV_, DBETA_P, DG_P, DS0,
    L, H, DK, DV, NCK, BH, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_bb, s_bh, s_bl, s_gb, s_gh, s_gl,
    s_ob, s_oh, s_ol, s_ov, s_dvb, s_dvh, s_dvl, s_dvv,
    HAS_DSFIN: tl.constexpr, CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    pid_v, b, h, bh, kk, km, vv, vm, m2, st_off = _program(H, DK, DV, BK, BV)
    if HAS_DSFIN:
        dS = tl.load(DSFIN + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    qp = Q + b * s_qb + h * s_qh + kk * s_qk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    bp = BETA + b * s_bb + h * s_bh
    gp = LOGG + b * s_gb + h * s_gh
    dop = DO + b * s_ob + h * s_oh + vv * s_ov
    ep = ERR + bh * L * DV + vv
    cp = CKPT + bh * NCK * DK * DV + st_off
    part = pid_v.to(tl.int64) * BH + bh
    sp = SCRATCH + part * CK * BK * BV + kk[:, None] * BV + tl.arange(0, BV)[None, :]
    dqp = DQ_P + part * L * DK + kk
    dkp = DK_P + part * L * DK + kk
    dbp = DBETA_P + part * L
    dgp = DG_P + part * L
    dvp = DV_ + b * s_dvb + h * s_dvh + vv * s_dvv
    for i in range(NCK):
        blk = NCK - 1 - i
        t0 = blk * CK
        n = tl.minimum(CK, L - t0)
        # recompute S' = g_t S_{t-1} for the block's steps from its checkpoint
        S = tl.load(cp + blk * DK * DV, mask=m2, other=0.0)
        for j in range(n):
            t = t0 + j
            k_t = tl.load(kp + t * s_kl, mask=km, other=0.0).to(tl.float32)
            b_t = tl.load(bp + t * s_bl).to(tl.float32)
            S = S * tl.exp(tl.load(gp + t * s_gl).to(tl.float32))
            tl.store(sp + j * BK * BV, S)
            e = tl.load(ep + t * DV, mask=vm, other=0.0)
            S += (b_t * k_t)[:, None] * e[None, :]
        tl.debug_barrier()
        for jj in range(n):
            j = n - 1 - jj
            t = t0 + j
            Sp = tl.load(sp + j * BK * BV)
            k_t = tl.load(kp + t * s_kl, mask=km, other=0.0).to(tl.float32)
            q_t = tl.load(qp + t * s_ql, mask=km, other=0.0).to(tl.float32)
            b_t = tl.load(bp + t * s_bl).to(tl.float32)
            g_t = tl.exp(tl.load(gp + t * s_gl).to(tl.float32))
            do = tl.load(dop + t * s_ol, mask=vm, other=0.0).to(tl.float32)
            e = tl.load(ep + t * DV, mask=vm, other=0.0)
            St = Sp + (b_t * k_t)[:, None] * e[None, :]
            dq = tl.sum(St * do[None, :], axis=1) * scale
            dS += (scale * q_t)[:, None] * do[None, :]
            dw = tl.sum(dS * k_t[:, None], axis=0)
            dk = b_t * tl.sum(dS * e[None, :], axis=1)
            db = tl.sum(dw * e, axis=0)
            de = b_t * dw
            dk -= tl.sum(Sp * de[None, :], axis=1)
            dS -= k_t[:, None] * de[None, :]
            dg = tl.sum(tl.sum(dS * Sp, axis=1), axis=0)
            dS = dS * g_t
            tl.store(dvp + t * s_dvl, de.to(DV_.dtype.element_ty), mask=vm)
            tl.store(dqp + t * DK, dq, mask=km)
            tl.store(dkp + t * DK, dk, mask=km)
            tl.store(dbp + t, db)
            tl.store(dgp + t, dg)
        tl.debug_barrier()
    tl.store(DS0 + bh * DK * DV + st_off, dS, mask=m2)


def _s(t):
    return tuple(t.stride())


def _check(q, k, v, beta, log_g):
    B, H, L, DK = q.shape
    if k.shape != q.shape or v.shape[:3] != (B, H, L) or beta.shape != (B, H, L) \
            or log_g.shape != (B, H, L):
        raise ValueError(
            f"expected q, k [B, H, L, K], v [B, H, L, V], beta and log_g [B, H, L]; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(beta.shape)}, "
            f"{tuple(log_g.shape)}")


def _gdr_fwd(q, k, v, beta, log_g, scale, s0, chunked, block_size):
    """The forward launches: ``(o, S_L, e, checkpoints, chunk tiles)`` (the tiles only when
    ``chunked``, else an empty tensor)."""
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    dev = q.device
    o = torch.empty_like(v)
    err = torch.empty((B * H, L, DV), device=dev, dtype=torch.float32)
    sfin = torch.empty((B, H, DK, DV), device=dev, dtype=torch.float32)
    strides = (*_s(q), *_s(k), *_s(v), *beta.stride(), *log_g.stride(), *_s(o))
    if chunked:
        cfg = _chunk_config(L, DK, DV, block_size)
        ck = cfg.pop("BT")
        nck = triton.cdiv(L, ck)
        ckpt = torch.empty((B * H, nck, DK, DV), device=dev, dtype=torch.float32)
        prec = _dot_prec(q)
        sprec = "tf32x3" if prec == "tf32" else "ieee"
        tb = torch.empty((B * H, nck, ck, ck), device=dev, dtype=torch.float32)
        _gdr_prep_kernel[(nck, B * H)](
            k, beta, log_g, tb, L, H, DK, nck, *_s(k), *beta.stride(), *log_g.stride(),
            BT=ck, LOG2BT=ck.bit_length() - 1, BK=cfg["BK"], SPREC=sprec,
            **{kw: cfg[kw] for kw in ("num_warps",) if kw in cfg},
        )
        _gdr_chunk_fwd_kernel[(B * H, triton.cdiv(DV, cfg["BV"]))](
            q, k, v, beta, log_g, tb, s0, o, err, ckpt, sfin, L, H, DK, DV, nck, float(scale),
            *strides, HAS_S0=s0 is not None, BT=ck, PREC=prec, SPREC=sprec, **cfg,
        )
    else:
        cfg = state_block_config(DK, DV)
        nck = triton.cdiv(L, CK)
        ckpt = torch.empty((B * H, nck, DK, DV), device=dev, dtype=torch.float32)
        tb = torch.empty(0, device=dev, dtype=torch.float32)
        _gdr_fwd_kernel[(B * H, triton.cdiv(DV, cfg["BV"]))](
            q, k, v, beta, log_g, s0, o, err, ckpt, sfin, L, H, DK, DV, nck, float(scale),
            *strides, HAS_S0=s0 is not None, CK=CK, **cfg,
        )
    return o, sfin, err, ckpt, tb


def _gdr_bwd(q, k, v, beta, log_g, do, dsfin, err, ckpt, tb, scale, chunked):
    """The backward launches: ``(dq, dk, dv, dbeta, dlog_g, d initial_state)``, partials summed
    (fp32), ``dv`` in ``v``'s dtype, the state gradient fp32."""
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    dv = torch.empty(v.shape, dtype=v.dtype, device=dev)
    ds0 = torch.empty((B, H, DK, DV), **f32)
    strides = (*_s(q), *_s(k), *beta.stride(), *log_g.stride(), *_s(do), *_s(dv))
    if chunked:
        cfg = _chunk_config(L, DK, DV)
        cfg.pop("BT")  # the chunk is the forward's (the tiles' size)
        nv = triton.cdiv(DV, cfg["BV"])
        dq_p, dk_p = torch.empty((nv, B, H, L, DK), **f32), torch.empty((nv, B, H, L, DK), **f32)
        db_p, dg_p = torch.empty((nv, B, H, L), **f32), torch.empty((nv, B, H, L), **f32)
        prec = _dot_prec(q)
        _gdr_chunk_bwd_kernel[(B * H, nv)](
            q, k, beta, log_g, tb, do, dsfin, err, ckpt, dq_p, dk_p, dv, db_p, dg_p, ds0,
            L, H, DK, DV, ckpt.shape[1], B * H, float(scale), *strides,
            HAS_DSFIN=dsfin is not None, BT=tb.shape[-1], PREC=prec,
            SPREC="tf32x3" if prec == "tf32" else "ieee", **cfg,
        )
    else:
        cfg = state_block_config(DK, DV)
        nv = triton.cdiv(DV, cfg["BV"])
        dq_p, dk_p = torch.empty((nv, B, H, L, DK), **f32), torch.empty((nv, B, H, L, DK), **f32)
        db_p, dg_p = torch.empty((nv, B, H, L), **f32), torch.empty((nv, B, H, L), **f32)
        scratch = torch.empty((nv * B * H, CK, cfg["BK"], cfg["BV"]), **f32)
        _gdr_bwd_kernel[(B * H, nv)](
            q, k, beta, log_g, do, dsfin, err, ckpt, scratch, dq_p, dk_p, dv, db_p, dg_p, ds0,
            L, H, DK, DV, ckpt.shape[1], B * H, float(scale), *strides,
            HAS_DSFIN=dsfin is not None, CK=CK, **cfg,
        )
    dq, dk, db, dg = (t.sum(0) for t in (dq_p, dk_p, db_p, dg_p))
    return dq, dk, dv, db, dg, ds0


@torch.library.custom_op("mad_bench::gated_delta_rule", mutates_args=())
def gated_delta_rule_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        log_g: torch.Tensor, scale: float, initial_state: Optional[torch.Tensor],
                        chunked: bool, block_size: Optional[int]
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(o, S_L, e, checkpoints, chunk tiles)``: the last three are what the backward reads (an
    op's backward sees only its inputs and outputs)."""
    _check(q, k, v, beta, log_g)
    s0 = initial_state.float().contiguous() if initial_state is not None else None
    return _gdr_fwd(q, k, v, beta, log_g, scale, s0, chunked, block_size)


@gated_delta_rule_op.register_fake
def _(q, k, v, beta, log_g, scale, initial_state, chunked, block_size):
    _check(q, k, v, beta, log_g)
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    f32 = dict(device=q.device, dtype=torch.float32)
    ck = _chunk_config(L, DK, DV, block_size)["BT"] if chunked else CK
    nck = triton.cdiv(L, ck)
    tb = torch.empty((B * H, nck, ck, ck) if chunked else (0,), **f32)
    return (torch.empty_like(v), torch.empty((B, H, DK, DV), **f32), torch.empty((B * H, L, DV), **f32),
            torch.empty((B * H, nck, DK, DV), **f32), tb)


@torch.library.custom_op("mad_bench::gated_delta_rule_bwd", mutates_args=())
def gated_delta_rule_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                            log_g: torch.Tensor, do: torch.Tensor, dsfin: Optional[torch.Tensor],
                            err: torch.Tensor, ckpt: torch.Tensor, tb: torch.Tensor, scale: float,
                            chunked: bool
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                       torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dbeta, dlog_g, d initial_state)``, the last in fp32."""
    dsfin = dsfin.contiguous() if dsfin is not None else None
    dq, dk, dv, db, dg, ds0 = _gdr_bwd(q, k, v, beta, log_g, do, dsfin, err, ckpt, tb, scale, chunked)
    return dq.to(q.dtype), dk.to(k.dtype), dv, _laid_like(db, beta), _laid_like(dg, log_g), ds0


def _laid_like(grad, t):
    """``grad`` in ``t``'s dtype and layout (the gates are transposed views in the layers; a
    gradient laid like its input keeps what a compiled backward does next from meeting torch's
    own fake-vs-eager stride differences, e.g. softplus_backward's)."""
    return torch.empty_like(t).copy_(grad)


@gated_delta_rule_bwd_op.register_fake
def _(q, k, v, beta, log_g, do, dsfin, err, ckpt, tb, scale, chunked):
    B, H, _, DK = q.shape
    # strided as the real op's (a compiled graph lays out what follows by these strides)
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), torch.empty_like(beta),
            torch.empty_like(log_g), q.new_empty((B, H, DK, v.shape[-1]), dtype=torch.float32))


def _setup(ctx, inputs, output):
    q, k, v, beta, log_g, scale, initial_state, chunked, _ = inputs
    _, _, err, ckpt, tb = output
    ctx.mark_non_differentiable(err, ckpt, tb)
    ctx.set_materialize_grads(False)  # no zero gradients for the saved buffers
    ctx.save_for_backward(q, k, v, beta, log_g, err, ckpt, tb)
    ctx.scale, ctx.chunked = scale, chunked
    ctx.s0_dtype = initial_state.dtype if initial_state is not None else None


def _backward(ctx, do, dsfin, *_buffers):
    q, k, v, beta, log_g, err, ckpt, tb = ctx.saved_tensors
    if do is None:  # only the final state was used
        do = torch.zeros_like(v)
    dq, dk, dv, db, dg, ds0 = gated_delta_rule_bwd_op(q, k, v, beta, log_g, do, dsfin, err, ckpt, tb,
                                                      ctx.scale, ctx.chunked)
    ds0 = ds0.to(ctx.s0_dtype) if ctx.s0_dtype is not None else None
    return dq, dk, dv, db, dg, None, ds0, None, None


gated_delta_rule_op.register_autograd(_backward, setup_context=_setup)
register_fold(gated_delta_rule_op, fold_args=(0, 1, 2, 3, 4, 6))


def _dot_prec(x) -> str:
    """tl.dot precision: tf32 for 16-bit inputs; fp32 ones follow torch's matmul setting."""
    if x.dtype != torch.float32 or torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def _chunk_config(L: int, DK: int, DV: int, block_size: int | None = None) -> dict:
    """The chunked kernels' launch config: chunk BT (64, 32 from K 128; shorter sequences: the
    next power of two >= 16; ``block_size`` overrides, 16 under the interpreter), the whole key width, a value
    block of at most 64 (tl.dot needs >= 16)."""
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    BK = max(16, next_pow2(DK))
    BV = max(16, min(next_pow2(DV), 64))
    # wide heads: chunks of 32, so that the backward's ~20 [BT, BT] / [BT, K] / [K, BV] fp32
    # tiles stay near the register file (not measured against 64 yet)
    BT = block_size or min(64 if BK < 128 else 32, max(16, next_pow2(L)))
    nw = 8 if BK * max(BV, BT) >= 128 * 64 else 4
    return pick(dict(BT=BT, BK=BK, BV=BV, num_warps=nw),
                dict(BT=block_size or 16, BK=BK, BV=min(BV, 32)))


def gated_delta_rule_triton(q, k, v, beta, log_g, scale, initial_state=None, chunked: bool = True,
                            block_size: int | None = None):
    """``(o, S_L)`` by the Triton kernels (CUDA tensors, or CPU under ``TRITON_INTERPRET=1``).

    ``chunked``: both directions in the chunked WY form (default)
    or both step by step (the recurrent kernels). ``block_size``: the chunk (power of two >= 16;
    None: 64, shorter for short sequences)."""
    o, sfin, *_ = gated_delta_rule_op(q, k, v, beta, log_g, float(scale), initial_state, bool(chunked),
                                      block_size)
    return o, sfin
