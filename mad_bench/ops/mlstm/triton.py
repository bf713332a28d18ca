"""Chunked stabilised mLSTM (xLSTM's matrix memory): Triton forward and backward.

Layout as :func:`mad_bench.ops.mlstm.reference.mlstm_chunked` (the torch reference):
``q, k [B, H, L, K]``, ``v [B, H, L, V]``, input-gate pre-activation ``i_gate`` and log forget
gate ``log_f`` (``logsigmoid`` of the pre-activation) ``[B, H, L]``, state ``(C [B, H, K, V],
n [B, H, K], m [B, H])``. Recurrence (``m_0 = 0`` without a state)::

    m_t = max(log f_t + m_{t-1}, i_t)
    C_t = e^(log f_t + m_{t-1} - m_t) C_{t-1} + e^(i_t - m_t) k_t v_t^T     (n_t alike with k_t)
    h_t = C_t^T q_t / max(|n_t . q_t|, e^(-m_t))

Design as :mod:`mad_bench.ops.gla.triton` (small heads first): **one program per
(batch*head, V-block) walks the whole sequence chunk by chunk** with ``C [K, BV]``, ``n [K]``
and the scalar stabiliser ``m`` in registers: one launch forward, one launch backward (plus a
sum over V-blocks when there is more than one). Per chunk of ``BT`` steps, ``b`` the inclusive
cumulative ``log f`` inside the chunk, ``b_C`` its last value, ``m`` the chunk-start stabiliser::

    D_ts  = b_t - b_s + i_s  (s <= t)     m_t = max(b_t + m, max_s D_ts)      (row stabiliser)
    S     = (Q K^T) * e^(D - m_t)         c_t = e^(b_t + m - m_t)
    num   = S V + c * (Q C)               den = rowsum(S) + c * (Q n)
    h     = num / max(|den|, e^(-m_t))
    m'    = max(b_C + m, max_s (b_C - b_s + i_s))
    C    <- e^(b_C + m - m') C + (K * e^(b_C - b + i - m'))^T V            (n alike)

Every exponent is ``<= 0``. ``h`` does not depend on the choice of stabilisers (they cancel),
and, as in the reference, ``m`` carries no gradient (treated as a constant everywhere, also in
the returned final state and for the initial ``m``). The row stabilisers therefore differ from
the reference's (other chunking) without changing ``h`` or any gradient.

Backward (same layout): with ``den' = max(|den|, e^-m_t)``, ``dnum = dh / den'`` and
``dden = -(dh . h) / den' * sign(den) * [|den| > e^-m_t]``, ``num`` and ``den`` are a linear
attention with an extra all-ones value column. A forward pass over the chunks recomputes the
chunk-start states (stored to a scratch ``[B, H, L / BT, K, V]`` for the second pass) and gives
``dq``; a reverse pass carries ``(dC, dn)`` and gives ``dk``, ``dv``, the gate gradients and
``d(C_0, n_0)``. ``d i_s = k_s . dk_s`` (``i_s`` only scales ``k_s``). ``d log f_r`` sums every
path through ``r`` directly, chunk-locally: intra pairs ``s < r <= t`` of ``dS * S``, the
carried-state read-outs at ``t >= r``, the decay of the chunk-start state and of the inputs
``s < r`` to the chunk end (``<dC_end, .>``). (The suffix-sum identity ``sum_{t>=r} (q.dq -
k.dk) + <dC_L, C_L>`` that :mod:`mad_bench.ops.gla.triton` uses cancels catastrophically here:
forget gates near 0 make the true gradient tiny next to those terms.) Exclusive prefix sums
are scans of ``(exclusive, inclusive)`` pairs, never ``cumsum - self``, for the same reason.

The forward stores (when a gradient is needed) the signed ``den`` per step and the chunk-start
stabilisers; the backward recomputes everything else. ``dh . h`` (needs all of V) is computed in
the kernel with one V-block and by torch before the launch with several.

Inputs ``q, k, v`` fp32 / bf16 / fp16, gates any float (fp32 inside); ``h`` in ``v``'s dtype,
the final state in fp32. Any ``L`` (masked tail), any ``K, V`` (padded to powers of two >= 16;
``K <= 256``); strided views are fine (unit stride on the head dim; gates any stride).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...configs.primitives.mlstm import valid_block  # the rule lives with the config that checks specs
from ..vmap_rules import is_vmapped, register_fold
from ..dispatch import jit, next_pow2, num_sms, pick, tl, triton

__all__ = ["mlstm_triton", "valid_block", "mlstm_op"]


# ----------------------------------------------------------------------------- kernels
@jit
def _excl_combine(ae, ai, be, bi):
    # scan of (exclusive, inclusive) pairs from (0, x): exact exclusive prefix sums
    return ai + be, ai + bi


@jit
def _fwd_kernel(
    Q, K, V, IG, LF, C0, N0, M0, O, CT, NT, MT, DEN, MCH,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ib, s_ih, s_il, s_fb, s_fh, s_fl,
    H, L, DK, DV, NCH,
    HAS_S0: tl.constexpr, STORE_ST: tl.constexpr, SAVE: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    bh = pid_bh.to(tl.int64)
    q_base = Q + b * s_qb + h * s_qh
    k_base = K + b * s_kb + h * s_kh
    v_base = V + b * s_vb + h * s_vh
    i_base = IG + b * s_ib + h * s_ih
    f_base = LF + b * s_fb + h * s_fh
    o_base = O + bh * L * DV
    rt = tl.arange(0, BT)
    rk = tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    causal = rt[:, None] >= rt[None, :]
    s_off = bh * DK * DV + rk[:, None] * DV + rv[None, :]
    s_mask = mk[:, None] & mv[None, :]
    if HAS_S0:
        C = tl.load(C0 + s_off, mask=s_mask, other=0.0).to(tl.float32)
        n = tl.load(N0 + bh * DK + rk, mask=mk, other=0.0).to(tl.float32)
        m = tl.load(M0 + bh).to(tl.float32)
    else:
        C = tl.zeros([BK, BV], dtype=tl.float32)
        n = tl.zeros([BK], dtype=tl.float32)
        m = tl.sum(tl.zeros([BT], dtype=tl.float32), axis=0)
    for t0 in range(0, L, BT):
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mt[:, None] & mv[None, :],
                    other=0.0).to(tl.float32)
        ig = tl.load(i_base + t * s_il, mask=mt, other=0.0).to(tl.float32)
        lf = tl.load(f_base + t * s_fl, mask=mt, other=0.0).to(tl.float32)
        ig = tl.where(mt, ig, float("-inf"))  # padded steps: no input, no decay
        bc = tl.cumsum(lf, axis=0)
        bl = tl.sum(lf, axis=0)
        Dm = tl.where(causal, bc[:, None] - bc[None, :] + ig[None, :], float("-inf"))
        mc = bc + m
        mr = tl.maximum(mc, tl.max(Dm, axis=1))
        P = tl.exp(Dm - mr[:, None])
        cq = tl.exp(mc - mr)
        S = tl.dot(q, tl.trans(k), input_precision=PREC) * P
        num = tl.dot(S, v, input_precision=PREC) + cq[:, None] * tl.dot(q, C, input_precision=PREC)
        den = tl.sum(S, axis=1) + cq * tl.sum(q * n[None, :], axis=1)
        o = num / tl.maximum(tl.abs(den), tl.exp(-mr))[:, None]
        tl.store(o_base + t[:, None] * DV + rv[None, :], o.to(O.dtype.element_ty),
                 mask=mt[:, None] & mv[None, :])
        if SAVE:
            if pid_v == 0:
                tl.store(DEN + bh * L + t, den, mask=mt)
                tl.store(MCH + bh * (NCH + 1) + t0 // BT, m)
        # state update
        wv = bl - bc + ig
        m_new = tl.maximum(bl + m, tl.max(wv, axis=0))
        kw = k * tl.exp(wv - m_new)[:, None]
        a_old = tl.exp(bl + m - m_new)
        C = C * a_old + tl.dot(tl.trans(kw), v, input_precision=PREC)
        n = n * a_old + tl.sum(kw, axis=0)
        m = m_new
    if STORE_ST:
        tl.store(CT + s_off, C, mask=s_mask)
    if pid_v == 0:
        if SAVE:
            tl.store(MCH + bh * (NCH + 1) + NCH, m)
        if STORE_ST:
            tl.store(NT + bh * DK + rk, n, mask=mk)
            tl.store(MT + bh, m)


@jit
def _bwd_kernel(
    Q, K, V, IG, LF, C0, N0, O, DO, DELTA, DEN, MCH, DCT, DNT, CS, NS,
    DQ, DK, DV, DI, DF, DC0, DN0,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ib, s_ih, s_il, s_fb, s_fh, s_fl,
    s_ob, s_oh, s_ol,
    H, L, DK_, DV_, NCH, part_qk, part_g,
    HAS_S0: tl.constexpr, HAS_DST: tl.constexpr, STORE_DS0: tl.constexpr,
    DELTA_IN: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    bh = pid_bh.to(tl.int64)
    q_base = Q + b * s_qb + h * s_qh
    k_base = K + b * s_kb + h * s_kh
    v_base = V + b * s_vb + h * s_vh
    i_base = IG + b * s_ib + h * s_ih
    f_base = LF + b * s_fb + h * s_fh
    o_base = O + bh * L * DV_
    do_base = DO + b * s_ob + h * s_oh
    pv = pid_v.to(tl.int64)
    # partial (per V-block) dq / dk / di / dlog_f buffers, contiguous [NV, B*H, L, (K)]
    dq_base = DQ + pv * part_qk + bh * L * DK_
    dk_base = DK + pv * part_qk + bh * L * DK_
    di_base = DI + pv * part_g + bh * L
    df_base = DF + pv * part_g + bh * L
    dv_base = DV + bh * L * DV_
    m_base = MCH + bh * (NCH + 1)
    cs_base = CS + bh * NCH * DK_ * DV_  # chunk-start states, written by pass 1, read by pass 2
    ns_base = NS + bh * NCH * DK_
    rt = tl.arange(0, BT)
    rk = tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK_
    mv = rv < DV_
    w_first = (pid_v == 0).to(tl.float32)  # the den / n terms are V-independent: count them once
    causal = rt[:, None] >= rt[None, :]
    s_off = bh * DK_ * DV_ + rk[:, None] * DV_ + rv[None, :]
    s_mask = mk[:, None] & mv[None, :]

    # ---- pass 1 (forward in time): chunk-start states, dq, q . dq
    if HAS_S0:
        C = tl.load(C0 + s_off, mask=s_mask, other=0.0).to(tl.float32)
        n = tl.load(N0 + bh * DK_ + rk, mask=mk, other=0.0).to(tl.float32)
    else:
        C = tl.zeros([BK, BV], dtype=tl.float32)
        n = tl.zeros([BK], dtype=tl.float32)
    for t0 in range(0, L, BT):
        c = t0 // BT
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        ig = tl.load(i_base + t * s_il, mask=mt, other=0.0).to(tl.float32)
        lf = tl.load(f_base + t * s_fl, mask=mt, other=0.0).to(tl.float32)
        ig = tl.where(mt, ig, float("-inf"))
        m = tl.load(m_base + c)
        m_new = tl.load(m_base + c + 1)
        bc = tl.cumsum(lf, axis=0)
        bl = tl.sum(lf, axis=0)
        Dm = tl.where(causal, bc[:, None] - bc[None, :] + ig[None, :], float("-inf"))
        mc = bc + m
        mr = tl.maximum(mc, tl.max(Dm, axis=1))
        P = tl.exp(Dm - mr[:, None])
        cq = tl.exp(mc - mr)
        den = tl.load(DEN + bh * L + t, mask=mt, other=1.0)
        floor = tl.exp(-mr)
        rden = 1.0 / tl.maximum(tl.abs(den), floor)
        if DELTA_IN:
            o = tl.load(o_base + t[:, None] * DV_ + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
            delta = tl.sum(do * o, axis=1)
        else:
            delta = tl.load(DELTA + bh * L + t, mask=mt, other=0.0)
        dnum = do * rden[:, None]
        dden = tl.where(tl.abs(den) > floor, tl.where(den > 0, -1.0, 1.0) * delta * rden, 0.0) * w_first
        dSP = (tl.dot(dnum, tl.trans(v), input_precision=PREC) + dden[:, None]) * P
        dqc = cq[:, None] * (tl.dot(dnum, tl.trans(C), input_precision=PREC) + dden[:, None] * n[None, :])
        dq = tl.dot(dSP, k, input_precision=PREC) + dqc
        tl.store(dq_base + t[:, None] * DK_ + rk[None, :], dq.to(DQ.dtype.element_ty), mask=mqk)
        tl.store(df_base + t, tl.sum(q * dqc, axis=1), mask=mt)  # carried-state read-out term
        tl.store(cs_base + c * DK_ * DV_ + rk[:, None] * DV_ + rv[None, :], C, mask=s_mask)
        if pid_v == 0:
            tl.store(ns_base + c * DK_ + rk, n, mask=mk)
        wv = bl - bc + ig
        kw = k * tl.exp(wv - m_new)[:, None]
        a_old = tl.exp(bl + m - m_new)
        C = C * a_old + tl.dot(tl.trans(kw), v, input_precision=PREC)
        n = n * a_old + tl.sum(kw, axis=0)

    # ---- pass 2 (reverse in time): (dC, dn), dk, dv, d i, d log f
    if HAS_DST:
        dC = tl.load(DCT + s_off, mask=s_mask, other=0.0).to(tl.float32)
        dn = tl.load(DNT + bh * DK_ + rk, mask=mk, other=0.0).to(tl.float32) * w_first
    else:
        dC = tl.zeros([BK, BV], dtype=tl.float32)
        dn = tl.zeros([BK], dtype=tl.float32)
    tl.debug_barrier()  # pass 1's stores are read back below by other threads
    for i in range(0, NCH):
        c = NCH - 1 - i
        t0 = c * BT
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        ig = tl.load(i_base + t * s_il, mask=mt, other=0.0).to(tl.float32)
        lf = tl.load(f_base + t * s_fl, mask=mt, other=0.0).to(tl.float32)
        ig = tl.where(mt, ig, float("-inf"))
        m = tl.load(m_base + c)
        m_new = tl.load(m_base + c + 1)
        bc = tl.cumsum(lf, axis=0)
        bl = tl.sum(lf, axis=0)
        Dm = tl.where(causal, bc[:, None] - bc[None, :] + ig[None, :], float("-inf"))
        mc = bc + m
        mr = tl.maximum(mc, tl.max(Dm, axis=1))
        P = tl.exp(Dm - mr[:, None])
        cq = tl.exp(mc - mr)
        den = tl.load(DEN + bh * L + t, mask=mt, other=1.0)
        floor = tl.exp(-mr)
        rden = 1.0 / tl.maximum(tl.abs(den), floor)
        if DELTA_IN:
            o = tl.load(o_base + t[:, None] * DV_ + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
            delta = tl.sum(do * o, axis=1)
        else:
            delta = tl.load(DELTA + bh * L + t, mask=mt, other=0.0)
        dnum = do * rden[:, None]
        dden = tl.where(tl.abs(den) > floor, tl.where(den > 0, -1.0, 1.0) * delta * rden, 0.0) * w_first
        Sqk = tl.dot(q, tl.trans(k), input_precision=PREC)
        S = Sqk * P
        dSP = (tl.dot(dnum, tl.trans(v), input_precision=PREC) + dden[:, None]) * P
        w = tl.exp(bl - bc + ig - m_new)
        a_old = tl.exp(bl + m - m_new)
        dks = w[:, None] * (tl.dot(v, tl.trans(dC), input_precision=PREC) + dn[None, :])
        dk = tl.dot(tl.trans(dSP), q, input_precision=PREC) + dks
        dv = tl.dot(tl.trans(S), dnum, input_precision=PREC) + tl.dot(k * w[:, None], dC, input_precision=PREC)
        tl.store(di_base + t, tl.sum(k * dk, axis=1), mask=mt)
        # d log f_r, every path summed directly (no suffix-sum identity: no cancellation when
        # the true gradient is tiny): intra pairs s < r <= t, the carried-state read-outs at
        # t >= r, the chunk-start state's decay and the decay of inputs s < r to the chunk end.
        # (exclusive prefix sums as scans, not cumsum - self: that cancels when self dominates)
        A = dSP * Sqk
        Ax, _ = tl.associative_scan((tl.zeros_like(A), A), 1, _excl_combine)  # sum_{s<r} A_ts
        intra = tl.sum(tl.where(causal, Ax, 0.0), axis=0)
        x = tl.where(mt, tl.load(df_base + t, mask=mt, other=0.0), 0.0)
        carry = tl.cumsum(x, axis=0, reverse=True)
        Cs = tl.load(cs_base + c * DK_ * DV_ + rk[:, None] * DV_ + rv[None, :], mask=s_mask, other=0.0)
        ns = tl.load(ns_base + c * DK_ + rk, mask=mk, other=0.0)
        ks = tl.sum(k * dks, axis=1)
        ksx, _ = tl.associative_scan((tl.zeros_like(ks), ks), 0, _excl_combine)
        old = a_old * (tl.sum(tl.sum(dC * Cs, axis=1), axis=0) + tl.sum(dn * ns, axis=0))
        tl.store(df_base + t, intra + carry + old + ksx, mask=mt)
        tl.store(dk_base + t[:, None] * DK_ + rk[None, :], dk.to(DK.dtype.element_ty), mask=mqk)
        tl.store(dv_base + t[:, None] * DV_ + rv[None, :], dv.to(DV.dtype.element_ty), mask=mtv)
        qc = q * cq[:, None]
        dC = dC * a_old + tl.dot(tl.trans(qc), dnum, input_precision=PREC)
        dn = dn * a_old + tl.sum(qc * dden[:, None], axis=0)
    if STORE_DS0:
        tl.store(DC0 + s_off, dC, mask=s_mask)
        if pid_v == 0:
            tl.store(DN0 + bh * DK_ + rk, dn, mask=mk)


# ----------------------------------------------------------------------------- launch
def _cfg(B: int, H: int, L: int, DK: int, DV: int, device, chunk_size):
    BK = max(16, next_pow2(DK))
    if BK > 256:
        raise ValueError(f"head key dim K={DK} > 256 is not supported by the Triton kernel")
    if chunk_size is not None:
        if chunk_size < 16 or chunk_size & (chunk_size - 1):
            raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
        BT = chunk_size
    else:
        BT = min(64, max(16, next_pow2(L)))
    BV = max(16, min(next_pow2(DV), 64))
    # few (batch*head) sequences and wide values: split V over programs to fill the GPU
    while BV > 32 and B * H * triton.cdiv(DV, BV) < 2 * num_sms(device):
        BV //= 2
    big = BK * max(BT, BV) > 64 * 64
    gpu = dict(BT=BT, BK=BK, BV=BV, num_warps=8 if big else 4)
    interp = dict(BT=chunk_size or 16, BK=BK, BV=16)
    return pick(gpu, interp)


def _prec(x) -> str:
    if x.dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _unit(x):
    """Unit stride on the last dim (copy otherwise) and the (b, h, l) strides."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x, (x.stride(0), x.stride(1), x.stride(2))


def _s3(g):
    return g, (g.stride(0), g.stride(1), g.stride(2))


def _fwd(q, k, v, ig, lf, s0, store_st, save, chunk_size):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    cfg = _cfg(B, H, L, DK, DV, q.device, chunk_size)
    NCH = triton.cdiv(L, cfg["BT"])
    q, sq = _unit(q)
    k, sk = _unit(k)
    v, sv = _unit(v)
    ig, si = _s3(ig)
    lf, sf = _s3(lf)
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    o = torch.empty((B, H, L, DV), device=dev, dtype=v.dtype)
    CT = torch.empty((B, H, DK, DV), **f32) if store_st else None
    NT = torch.empty((B, H, DK), **f32) if store_st else None
    MT = torch.empty((B, H), **f32) if store_st else None
    den = torch.empty((B, H, L), **f32) if save else None
    mch = torch.empty((B, H, NCH + 1), **f32) if save else None
    C0, N0, M0 = s0 if s0 is not None else (None, None, None)
    grid = (B * H, triton.cdiv(DV, cfg["BV"]))
    _fwd_kernel[grid](
        q, k, v, ig, lf, C0, N0, M0, o, CT, NT, MT, den, mch,
        *sq, *sk, *sv, *si, *sf, H, L, DK, DV, NCH,
        HAS_S0=s0 is not None, STORE_ST=store_st, SAVE=save, PREC=_prec(q), **cfg,
    )
    return o, (CT, NT, MT), den, mch


def _bwd(q, k, v, ig, lf, s0, o, do, dC, dn, den, mch, need_ds0, chunk_size):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    cfg = _cfg(B, H, L, DK, DV, q.device, chunk_size)
    NCH = triton.cdiv(L, cfg["BT"])
    NV = triton.cdiv(DV, cfg["BV"])
    q, sq = _unit(q)
    k, sk = _unit(k)
    v, sv = _unit(v)
    ig, si = _s3(ig)
    lf, sf = _s3(lf)
    do, so = _unit(do)
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    delta = None
    if NV > 1:  # dh . h needs all of V: one small reduction before the launch
        delta = (do.float() * o.float()).sum(-1).contiguous()
    part_dtype = torch.float32 if NV > 1 else None
    dq = torch.empty((NV, B, H, L, DK), device=dev, dtype=part_dtype or q.dtype)
    dk = torch.empty((NV, B, H, L, DK), device=dev, dtype=part_dtype or k.dtype)
    dv = torch.empty((B, H, L, DV), device=dev, dtype=v.dtype)
    di = torch.empty((NV, B, H, L), **f32)
    df = torch.empty((NV, B, H, L), **f32)
    cs = torch.empty((B, H, NCH, DK, DV), **f32)  # chunk-start states (scratch)
    ns = torch.empty((B, H, NCH, DK), **f32)
    dC0 = torch.empty((B, H, DK, DV), **f32) if need_ds0 else None
    dn0 = torch.empty((B, H, DK), **f32) if need_ds0 else None
    C0, N0 = (s0[0], s0[1]) if s0 is not None else (None, None)
    has_dst = dC is not None or dn is not None
    if has_dst:
        dC = torch.zeros((B, H, DK, DV), **f32) if dC is None else dC.float().contiguous()
        dn = torch.zeros((B, H, DK), **f32) if dn is None else dn.float().contiguous()
    _bwd_kernel[(B * H, NV)](
        q, k, v, ig, lf, C0, N0, o, do, delta, den, mch, dC, dn, cs, ns,
        dq, dk, dv, di, df, dC0, dn0,
        *sq, *sk, *sv, *si, *sf, *so, H, L, DK, DV, NCH, B * H * L * DK, B * H * L,
        HAS_S0=s0 is not None, HAS_DST=has_dst, STORE_DS0=need_ds0, DELTA_IN=NV == 1,
        PREC=_prec(q), **cfg,
    )
    if NV > 1:
        dq, dk = dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype)
        di, df = di.sum(0), df.sum(0)
    else:
        dq, dk, di, df = dq[0], dk[0], di[0], df[0]
    return dq, dk, dv, di, df, dC0, dn0


def _check(q, k, v, ig, lf, C0, n0, m0, chunk_size):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"the Triton kernel takes fp32 / bf16 / fp16, got {name} {t.dtype}")
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3] \
            or ig.shape != q.shape[:3] or lf.shape != q.shape[:3]:
        raise ValueError(f"expected q, k [B, H, L, K], v [B, H, L, V], i_gate and log_f [B, H, L]; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(ig.shape)}, "
                         f"{tuple(lf.shape)}")
    B, H, _, DK = q.shape
    want = ((B, H, DK, v.shape[-1]), (B, H, DK), (B, H))
    got = tuple(None if t is None else tuple(t.shape) for t in (C0, n0, m0))
    if got != (None,) * 3 and got != want:
        raise ValueError(f"initial_state (C, n, m) must be {want} (or all None), got {got}")
    if next_pow2(DK) > 256:
        raise ValueError(f"head key dim K={DK} > 256 is not supported by the Triton kernel")
    if chunk_size is not None and (chunk_size < 16 or chunk_size & (chunk_size - 1)):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")


@torch.library.custom_op("mad_bench::mlstm", mutates_args=())
def mlstm_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ig: torch.Tensor, lf: torch.Tensor,
             C0: Optional[torch.Tensor], n0: Optional[torch.Tensor], m0: Optional[torch.Tensor],
             store_st: bool, chunk_size: Optional[int], save: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(h, C_L, n_L, m_L, den, chunk stabilisers)``: the final state empty unless ``store_st``,
    the last two (what the backward reads: an op's backward sees only its inputs and outputs)
    empty unless ``save``; ``m`` gets no gradient."""
    _check(q, k, v, ig, lf, C0, n0, m0, chunk_size)
    s0 = tuple(t.float().contiguous() for t in (C0, n0, m0)) if C0 is not None else None
    o, (CT, NT, MT), den, mch = _fwd(q, k, v, ig, lf, s0, store_st, save, chunk_size)
    return (o, *(t if t is not None else q.new_empty(0, dtype=torch.float32) for t in (CT, NT, MT, den, mch)))


@mlstm_op.register_fake
def _(q, k, v, ig, lf, C0, n0, m0, store_st, chunk_size, save):
    _check(q, k, v, ig, lf, C0, n0, m0, chunk_size)
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    NCH = triton.cdiv(L, _cfg(B, H, L, DK, DV, q.device, chunk_size)["BT"])

    def f32(shape, keep):
        return q.new_empty(shape if keep else (0,), dtype=torch.float32)

    return (q.new_empty((B, H, L, DV), dtype=v.dtype), f32((B, H, DK, DV), store_st), f32((B, H, DK), store_st),
            f32((B, H), store_st), f32((B, H, L), save), f32((B, H, NCH + 1), save))


@torch.library.custom_op("mad_bench::mlstm_bwd", mutates_args=())
def mlstm_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ig: torch.Tensor, lf: torch.Tensor,
                 C0: Optional[torch.Tensor], n0: Optional[torch.Tensor], m0: Optional[torch.Tensor],
                 o: torch.Tensor, do: torch.Tensor, dC: Optional[torch.Tensor], dn: Optional[torch.Tensor],
                 den: torch.Tensor, mch: torch.Tensor, need_ds0: bool, chunk_size: Optional[int]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                            torch.Tensor]:
    """``(dq, dk, dv, di, dlog_f, dC0, dn0)``, the last two empty unless ``need_ds0``."""
    s0 = tuple(t.float().contiguous() for t in (C0, n0, m0)) if C0 is not None else None
    need_ds0 = need_ds0 and s0 is not None
    dq, dk, dv, di, df, dC0, dn0 = _bwd(q, k, v, ig, lf, s0, o, do, dC, dn, den, mch, need_ds0, chunk_size)
    if need_ds0:
        dC0, dn0 = dC0.to(C0.dtype), dn0.to(n0.dtype)
    else:
        dC0, dn0 = q.new_empty(0), q.new_empty(0)
    return dq, dk, dv, di.to(ig.dtype), df.to(lf.dtype), dC0, dn0


@mlstm_bwd_op.register_fake
def _(q, k, v, ig, lf, C0, n0, m0, o, do, dC, dn, den, mch, need_ds0, chunk_size):
    # contiguous, as the real op's (a compiled graph lays out what follows by these strides)
    need_ds0 = need_ds0 and C0 is not None
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), ig.new_empty(ig.shape),
            lf.new_empty(lf.shape), C0.new_empty(C0.shape) if need_ds0 else q.new_empty(0),
            n0.new_empty(n0.shape) if need_ds0 else q.new_empty(0))


def _setup(ctx, inputs, output):
    q, k, v, ig, lf, C0, n0, m0, store_st, chunk_size, save = inputs
    o, _, _, MT, den, mch = output
    ctx.mark_non_differentiable(MT, den, mch)
    ctx.set_materialize_grads(False)  # no zero gradients for the saved buffers
    ctx.save_for_backward(q, k, v, ig, lf, C0, n0, m0, o, den, mch)
    ctx.chunk_size = chunk_size


def _backward(ctx, do, dCT, dNT, *_no_grad):
    q, k, v, ig, lf, C0, n0, m0, o, den, mch = ctx.saved_tensors
    need_ds0 = C0 is not None and (ctx.needs_input_grad[5] or ctx.needs_input_grad[6])
    if do is None:
        do = torch.zeros_like(o)
    dq, dk, dv, di, df, dC0, dn0 = mlstm_bwd_op(q, k, v, ig, lf, C0, n0, m0, o, do, dCT, dNT, den, mch,
                                                need_ds0, ctx.chunk_size)
    return (dq, dk, dv, di, df, dC0 if need_ds0 else None, dn0 if need_ds0 else None, None, None, None, None)


mlstm_op.register_autograd(_backward, setup_context=_setup)
register_fold(mlstm_op, fold_args=tuple(range(8)))


def mlstm_triton(q, k, v, i_gate, log_f, initial_state, output_final_state, chunk_size):
    """The Triton path of :func:`mad_bench.ops.mlstm.mlstm` (``chunk_size``: the kernel's chunk)."""
    for t in (q, k, v):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"the Triton kernel takes fp32 / bf16 / fp16, got {t.dtype}")
    dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    C0, n0, m0 = initial_state if initial_state is not None else (None, None, None)
    save = torch.is_grad_enabled() and any(  # the backward's saved row / chunk values
        t is not None and (t.requires_grad or is_vmapped(t)) for t in (q, k, v, i_gate, log_f, C0, n0))
    o, C, n, m, _, _ = mlstm_op(q, k, v, i_gate, log_f, C0, n0, m0, bool(output_final_state), chunk_size,
                                save)
    return (o, (C, n, m)) if output_final_state else o
