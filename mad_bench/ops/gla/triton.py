"""Chunked (gated) causal linear attention: retention / simple GLA and per-key GLA.

Layout as flash-linear-attention: ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, states
``S [B, H, K, V]`` (``o_t = S_t^T (scale q_t)``). Recurrences (``g_t = exp(log_g_t)``)::

    chunk_simple_gla:  S_t = g_t S_{t-1} + k_t v_t^T      log_g [B, H, L]  (None: no decay)
    chunk_gla:         S_t = diag(g_t) S_{t-1} + k_t v_t^T   log_g [B, H, L, K]

:func:`chunked_linear_attention` sends per-key gates (chunk_gla) to the two-level kernels of
:mod:`.two_level`; the per-key branch of the kernels below (``GATE == 2``) is the previous
design, kept reachable through :func:`chunked_linear_attention_op` for comparison
(``benchmarks/check_gla_gdr.py`` times both).

Design (small heads first, MAD sizes: K = V = 16, L <= 1024, B*H ~ 1000): **one program per
(batch*head, V-block) walks the whole sequence chunk by chunk**, the state ``[K, BV]`` held in
registers, so the forward is one launch and the backward one launch (plus a sum over V-blocks
when there is more than one). Per chunk of ``BT`` steps, with ``b`` the inclusive cumulative
log gate inside the chunk (``<= 0``) and ``b_C`` its last value::

    o     = (Q K^T * D) V + (Q * e^b) S            D_ij = e^(b_i - b_j), j <= i (else 0)
    S    <- e^(b_C) S + (K * e^(b_C - b))^T V

Every exponent is ``<= 0``, so nothing overflows however strong the decay. For per-key gates
the intra-chunk ``D`` differs per key: chunks are short (``BT = 16``) and the scores are built
pairwise, one column ``j`` at a time (``sum_k q_ik k_jk exp(b_ik - b_jk)``, masked ``j <= i``):
no factorisation through a reference point, hence no overflow.

Backward, in the same one-program-per-sequence layout: a forward pass over the chunks
recomputes the chunk-start states and gives ``dq`` (which needs them), then a reverse pass
carries ``dS`` and gives ``dk``, ``dv`` and ``d initial_state``. The gate gradient uses the
identity (with ``B_t`` the global cumulative log gate; ``q`` scaled)::

    dL/dB_t = q_t . dq_t - k_t . dk_t  (+ <dS_L, S_L> at t = L),   dlog_g_t = sum_{s >= t} dL/dB_s

(per key for GLA: the products are taken elementwise and ``<dS_L, S_L>`` summed over V only):
``o`` depends on ``B`` only through ``q_t e^{B_t}``, ``k_s e^{-B_s}`` and the final state's
``e^{B_L}``. The first pass stores ``q . dq``, the reverse pass adds ``- k . dk`` and the
running reverse sum. With several V-blocks each program holds a partial ``dq``/``dk``/``dlog_g``
(all linear in the V columns), summed by torch.

Inputs fp32 / bf16 / fp16 (fp32 inside; ``tl.dot`` on fp32 operands, tf32 for 16-bit inputs,
IEEE fp32 for fp32 ones unless torch's float32 matmul precision allows tf32), outputs in the input dtype, the final state in fp32. Any ``L`` (masked tail),
any ``K``, ``V`` (padded to powers of two >= 16, masked; ``K <= 256``). Inputs may be strided
views (unit stride on the last dim), e.g. ``[B, L, H, d] -> [B, H, L, d]`` transposes, and
``log_g`` may be an expanded view (RetNet's fixed per-head decay).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..vmap_rules import register_fold
from ..dispatch import jit, next_pow2, num_sms, pick, tl, triton
from . import two_level
from .two_level import check_inputs, gla_op

__all__ = ["chunked_linear_attention", "chunked_linear_attention_op"]


# ----------------------------------------------------------------------------- kernels
# GATE: 0 no decay, 1 scalar per (head, step), 2 per key.
@jit
def _fwd_kernel(
    Q, K, V, G, H0, O, HT,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_gb, s_gh, s_gl,
    H, L, DK, DV, scale,
    GATE: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    q_base = Q + b * s_qb + h * s_qh
    k_base = K + b * s_kb + h * s_kh
    v_base = V + b * s_vb + h * s_vh
    g_base = G + b * s_gb + h * s_gh
    o_base = O + pid_bh.to(tl.int64) * L * DV
    rt = tl.arange(0, BT)
    rk = tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    causal = rt[:, None] >= rt[None, :]
    s_off = pid_bh.to(tl.int64) * DK * DV + rk[:, None] * DV + rv[None, :]
    s_mask = mk[:, None] & mv[None, :]
    if HAS_H0:
        S = tl.load(H0 + s_off, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    for t0 in range(0, L, BT):
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32) * scale
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mt[:, None] & mv[None, :],
                    other=0.0).to(tl.float32)
        if GATE == 0:
            A = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC), 0.0)
            o = tl.dot(A, v, input_precision=PREC) + tl.dot(q, S, input_precision=PREC)
            S = S + tl.dot(tl.trans(k), v, input_precision=PREC)
        elif GATE == 1:
            g = tl.load(g_base + t * s_gl, mask=mt, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)
            bl = tl.sum(g, axis=0)
            D = tl.exp(tl.where(causal, bc[:, None] - bc[None, :], float("-inf")))
            A = tl.dot(q, tl.trans(k), input_precision=PREC) * D
            o = tl.dot(A, v, input_precision=PREC) + tl.dot(q * tl.exp(bc)[:, None], S, input_precision=PREC)
            kd = k * tl.exp(bl - bc)[:, None]
            S = S * tl.exp(bl) + tl.dot(tl.trans(kd), v, input_precision=PREC)
        else:
            g = tl.load(g_base + t[:, None] * s_gl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)  # [BT, BK]
            bl = tl.sum(g, axis=0)  # [BK]
            A = tl.zeros([BT, BT], dtype=tl.float32)
            for j in tl.static_range(BT):  # pairwise scores, column j
                sel = (rt == j)[:, None]
                kj = tl.sum(tl.where(sel, k, 0.0), axis=0)
                bj = tl.sum(tl.where(sel, bc, 0.0), axis=0)
                e = tl.exp(tl.where((rt >= j)[:, None], bc - bj[None, :], float("-inf")))
                col = tl.sum(q * kj[None, :] * e, axis=1)
                A = tl.where((rt == j)[None, :], col[:, None], A)
            o = tl.dot(A, v, input_precision=PREC) + tl.dot(q * tl.exp(bc), S, input_precision=PREC)
            kd = k * tl.exp(bl[None, :] - bc)
            S = S * tl.exp(bl)[:, None] + tl.dot(tl.trans(kd), v, input_precision=PREC)
        tl.store(o_base + t[:, None] * DV + rv[None, :], o.to(O.dtype.element_ty),
                 mask=mt[:, None] & mv[None, :])
    if STORE_HT:
        tl.store(HT + s_off, S, mask=s_mask)


@jit
def _bwd_kernel(
    Q, K, V, G, H0, DO, DHT, DQ, DK, DV, DG, DH0,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_gb, s_gh, s_gl,
    s_ob, s_oh, s_ol,
    H, L, DK_, DV_, scale, part_qk, part_g,
    GATE: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    NEED_DG: tl.constexpr,
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
    g_base = G + b * s_gb + h * s_gh
    do_base = DO + b * s_ob + h * s_oh
    # partial (per V-block) dq / dk / dg buffers, contiguous [NV, B*H, L, (K)]
    dq_base = DQ + pid_v.to(tl.int64) * part_qk + bh * L * DK_
    dk_base = DK + pid_v.to(tl.int64) * part_qk + bh * L * DK_
    dv_base = DV + bh * L * DV_
    if NEED_DG:
        if GATE == 2:
            dg_base = DG + pid_v.to(tl.int64) * part_g + bh * L * DK_
        else:
            dg_base = DG + pid_v.to(tl.int64) * part_g + bh * L
    rt = tl.arange(0, BT)
    rk = tl.arange(0, BK)
    rv = pid_v * BV + tl.arange(0, BV)
    mk = rk < DK_
    mv = rv < DV_
    causal = rt[:, None] >= rt[None, :]
    s_off = bh * DK_ * DV_ + rk[:, None] * DV_ + rv[None, :]
    s_mask = mk[:, None] & mv[None, :]

    # ---- pass 1 (forward in time): recompute the chunk-start states, dq, q . dq
    if HAS_H0:
        S = tl.load(H0 + s_off, mask=s_mask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    for t0 in range(0, L, BT):
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32) * scale
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        dA = tl.dot(do, tl.trans(v), input_precision=PREC)  # [BT, BT]
        dqs = tl.dot(do, tl.trans(S), input_precision=PREC)  # [BT, BK]
        if GATE == 0:
            dA = tl.where(causal, dA, 0.0)
            dq = tl.dot(dA, k, input_precision=PREC) + dqs
            S = S + tl.dot(tl.trans(k), v, input_precision=PREC)
        elif GATE == 1:
            g = tl.load(g_base + t * s_gl, mask=mt, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)
            bl = tl.sum(g, axis=0)
            D = tl.exp(tl.where(causal, bc[:, None] - bc[None, :], float("-inf")))
            dq = tl.dot(dA * D, k, input_precision=PREC) + dqs * tl.exp(bc)[:, None]
            kd = k * tl.exp(bl - bc)[:, None]
            S = S * tl.exp(bl) + tl.dot(tl.trans(kd), v, input_precision=PREC)
        else:
            g = tl.load(g_base + t[:, None] * s_gl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)
            bl = tl.sum(g, axis=0)
            dq = dqs * tl.exp(bc)
            for j in tl.static_range(BT):
                sel = (rt == j)[:, None]
                kj = tl.sum(tl.where(sel, k, 0.0), axis=0)
                bj = tl.sum(tl.where(sel, bc, 0.0), axis=0)
                e = tl.exp(tl.where((rt >= j)[:, None], bc - bj[None, :], float("-inf")))
                dAj = tl.sum(tl.where((rt == j)[None, :], dA, 0.0), axis=1)
                dq += dAj[:, None] * kj[None, :] * e
            kd = k * tl.exp(bl[None, :] - bc)
            S = S * tl.exp(bl)[:, None] + tl.dot(tl.trans(kd), v, input_precision=PREC)
        tl.store(dq_base + t[:, None] * DK_ + rk[None, :], (dq * scale).to(DQ.dtype.element_ty), mask=mqk)
        if NEED_DG:
            if GATE == 1:
                tl.store(dg_base + t, tl.sum(q * dq, axis=1), mask=mt)
            elif GATE == 2:
                tl.store(dg_base + t[:, None] * DK_ + rk[None, :], q * dq, mask=mqk)

    # ---- pass 2 (reverse in time): dS, dk, dv, dlog_g
    if HAS_DHT:
        dS = tl.load(DHT + s_off, mask=s_mask, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    if GATE == 1:
        R = tl.sum(tl.sum(dS * S, axis=1), axis=0)  # <dS_L, S_L>: the final state's e^{B_L}
    elif GATE == 2:
        R = tl.sum(dS * S, axis=1)  # [BK]
    if NEED_DG:
        tl.debug_barrier()  # pass 1's q . dq stores are read back below by other threads
    NT = tl.cdiv(L, BT)
    for i in range(0, NT):
        t0 = (NT - 1 - i) * BT
        t = t0 + rt
        mt = t < L
        mqk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q = tl.load(q_base + t[:, None] * s_ql + rk[None, :], mask=mqk, other=0.0).to(tl.float32) * scale
        k = tl.load(k_base + t[:, None] * s_kl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * s_vl + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        do = tl.load(do_base + t[:, None] * s_ol + rv[None, :], mask=mtv, other=0.0).to(tl.float32)
        dA = tl.dot(do, tl.trans(v), input_precision=PREC)
        if GATE == 0:
            A = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC), 0.0)
            dA = tl.where(causal, dA, 0.0)
            dk = tl.dot(tl.trans(dA), q, input_precision=PREC) + tl.dot(v, tl.trans(dS), input_precision=PREC)
            dv = tl.dot(tl.trans(A), do, input_precision=PREC) + tl.dot(k, dS, input_precision=PREC)
            dS = dS + tl.dot(tl.trans(q), do, input_precision=PREC)
        elif GATE == 1:
            g = tl.load(g_base + t * s_gl, mask=mt, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)
            bl = tl.sum(g, axis=0)
            D = tl.exp(tl.where(causal, bc[:, None] - bc[None, :], float("-inf")))
            A = tl.dot(q, tl.trans(k), input_precision=PREC) * D
            dA = dA * D
            dec = tl.exp(bl - bc)[:, None]
            dk = tl.dot(tl.trans(dA), q, input_precision=PREC) + tl.dot(v, tl.trans(dS), input_precision=PREC) * dec
            dv = tl.dot(tl.trans(A), do, input_precision=PREC) + tl.dot(k * dec, dS, input_precision=PREC)
            dS = dS * tl.exp(bl) + tl.dot(tl.trans(q * tl.exp(bc)[:, None]), do, input_precision=PREC)
            if NEED_DG:
                x = tl.load(dg_base + t, mask=mt, other=0.0) - tl.sum(k * dk, axis=1)
                x = tl.where(mt, x, 0.0)
                tot = tl.sum(x, axis=0)
                tl.store(dg_base + t, R + tot - tl.cumsum(x, axis=0) + x, mask=mt)
                R += tot
        else:
            g = tl.load(g_base + t[:, None] * s_gl + rk[None, :], mask=mqk, other=0.0).to(tl.float32)
            bc = tl.cumsum(g, axis=0)
            bl = tl.sum(g, axis=0)
            A = tl.zeros([BT, BT], dtype=tl.float32)
            dk = tl.zeros([BT, BK], dtype=tl.float32)
            for j in tl.static_range(BT):
                sel = (rt == j)[:, None]
                kj = tl.sum(tl.where(sel, k, 0.0), axis=0)
                bj = tl.sum(tl.where(sel, bc, 0.0), axis=0)
                e = tl.exp(tl.where((rt >= j)[:, None], bc - bj[None, :], float("-inf")))
                colsel = (rt == j)[None, :]
                A = tl.where(colsel, tl.sum(q * kj[None, :] * e, axis=1)[:, None], A)
                dAj = tl.sum(tl.where(colsel, dA, 0.0), axis=1)
                dk = tl.where(sel, tl.sum(dAj[:, None] * q * e, axis=0)[None, :], dk)
            dec = tl.exp(bl[None, :] - bc)
            dk += tl.dot(v, tl.trans(dS), input_precision=PREC) * dec
            dv = tl.dot(tl.trans(A), do, input_precision=PREC) + tl.dot(k * dec, dS, input_precision=PREC)
            dS = dS * tl.exp(bl)[:, None] + tl.dot(tl.trans(q * tl.exp(bc)), do, input_precision=PREC)
            if NEED_DG:
                goff = dg_base + t[:, None] * DK_ + rk[None, :]
                x = tl.load(goff, mask=mqk, other=0.0) - k * dk
                x = tl.where(mqk, x, 0.0)
                tot = tl.sum(x, axis=0)
                tl.store(goff, R[None, :] + tot[None, :] - tl.cumsum(x, axis=0) + x, mask=mqk)
                R += tot
        tl.store(dk_base + t[:, None] * DK_ + rk[None, :], dk.to(DK.dtype.element_ty), mask=mqk)
        tl.store(dv_base + t[:, None] * DV_ + rv[None, :], dv.to(DV.dtype.element_ty), mask=mtv)
    if STORE_DH0:
        tl.store(DH0 + s_off, dS, mask=s_mask)


# ----------------------------------------------------------------------------- launch
def _cfg(gate: int, B: int, H: int, L: int, DK: int, DV: int, device, chunk_size):
    BK = max(16, next_pow2(DK))
    if BK > 256:
        raise ValueError(f"head key dim K={DK} > 256 is not supported by the Triton kernel")
    if chunk_size is not None:
        if chunk_size < 16 or chunk_size & (chunk_size - 1):
            raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
        BT = chunk_size
    elif gate == 2:
        BT = 16  # pairwise per-key scores: cost ~ BT * K per step, keep chunks short
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
    """``tl.dot`` precision: tf32 for 16-bit inputs; for fp32 follow torch's matmul setting
    (``torch.set_float32_matmul_precision``: 'highest', the default, gives IEEE fp32)."""
    if x.dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _strides(x):
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x, (x.stride(0), x.stride(1), x.stride(2))


def _gate_code(log_g) -> int:
    return 0 if log_g is None else (1 if log_g.dim() == 3 else 2)


def _fwd(q, k, v, log_g, h0, scale, store_ht, chunk_size):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    gate = _gate_code(log_g)
    cfg = _cfg(gate, B, H, L, DK, DV, q.device, chunk_size)
    q, sq = _strides(q)
    k, sk = _strides(k)
    v, sv = _strides(v)
    if log_g is None:
        g, sg = q, (0, 0, 0)  # never read
    else:
        g, sg = _strides(log_g)
    o = torch.empty((B, H, L, DV), device=q.device, dtype=v.dtype)
    ht = torch.empty((B, H, DK, DV), device=q.device, dtype=torch.float32) if store_ht else None
    prec = _prec(q)
    grid = (B * H, triton.cdiv(DV, cfg["BV"]))
    _fwd_kernel[grid](
        q, k, v, g, h0, o, ht, *sq, *sk, *sv, *sg, H, L, DK, DV, float(scale),
        GATE=gate, HAS_H0=h0 is not None, STORE_HT=store_ht, PREC=prec, **cfg,
    )
    return o, ht


def _bwd(q, k, v, log_g, h0, do, dht, scale, need_dg, need_dh0, chunk_size):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    gate = _gate_code(log_g)
    need_dg = need_dg and gate > 0
    cfg = _cfg(gate, B, H, L, DK, DV, q.device, chunk_size)
    NV = triton.cdiv(DV, cfg["BV"])
    q, sq = _strides(q)
    k, sk = _strides(k)
    v, sv = _strides(v)
    do, so = _strides(do)
    if log_g is None:
        g, sg = q, (0, 0, 0)
    else:
        g, sg = _strides(log_g)
    dev = q.device
    part_dtype = torch.float32 if NV > 1 else None
    dq = torch.empty((NV, B, H, L, DK), device=dev, dtype=part_dtype or q.dtype)
    dk = torch.empty((NV, B, H, L, DK), device=dev, dtype=part_dtype or k.dtype)
    dv = torch.empty((B, H, L, DV), device=dev, dtype=v.dtype)
    gshape = (NV, B, H, L) if gate == 1 else (NV, B, H, L, DK)
    dg = torch.empty(gshape, device=dev, dtype=torch.float32) if need_dg else None
    dh0 = torch.empty((B, H, DK, DV), device=dev, dtype=torch.float32) if need_dh0 else None
    prec = _prec(q)
    _bwd_kernel[(B * H, NV)](
        q, k, v, g, h0, do, dht, dq, dk, dv, dg, dh0, *sq, *sk, *sv, *sg, *so,
        H, L, DK, DV, float(scale), B * H * L * DK, (dg[0].numel() if need_dg else 0),
        GATE=gate, HAS_H0=h0 is not None, HAS_DHT=dht is not None, STORE_DH0=need_dh0,
        NEED_DG=need_dg, PREC=prec, **cfg,
    )
    if NV > 1:
        dq, dk = dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype)
        dg = dg.sum(0) if need_dg else None
    else:
        dq, dk = dq[0], dk[0]
        dg = dg[0] if need_dg else None
    return dq, dk, dv, dg, dh0


@torch.library.custom_op("mad_bench::chunked_linear_attention", mutates_args=())
def chunked_linear_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_g: Optional[torch.Tensor],
                                h0: Optional[torch.Tensor], scale: float, store_ht: bool,
                                chunk_size: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o, final state)`` (the state empty unless ``store_ht``); ``log_g`` None, ``[B, H, L]``
    or ``[B, H, L, K]`` (the one-program-per-sequence per-key design)."""
    check_inputs(q, k, v, log_g, h0, chunk_size)
    o, ht = _fwd(q, k, v, log_g, h0.contiguous() if h0 is not None else None, scale, store_ht, chunk_size)
    return o, ht if ht is not None else q.new_empty(0, dtype=torch.float32)


@chunked_linear_attention_op.register_fake
def _(q, k, v, log_g, h0, scale, store_ht, chunk_size):
    check_inputs(q, k, v, log_g, h0, chunk_size)
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    return (q.new_empty((B, H, L, DV), dtype=v.dtype),
            q.new_empty((B, H, DK, DV) if store_ht else (0,), dtype=torch.float32))


@torch.library.custom_op("mad_bench::chunked_linear_attention_bwd", mutates_args=())
def chunked_linear_attention_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_g: Optional[torch.Tensor],
                                    h0: Optional[torch.Tensor], do: torch.Tensor, dht: Optional[torch.Tensor],
                                    scale: float, need_dg: bool, need_dh0: bool, chunk_size: Optional[int]
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dlog_g, d initial state)``, the last two empty unless asked for."""
    need_dg = need_dg and log_g is not None
    need_dh0 = need_dh0 and h0 is not None
    h0 = h0.contiguous() if h0 is not None else None
    dht = dht.contiguous() if dht is not None else None
    dq, dk, dv, dg, dh0 = _bwd(q, k, v, log_g, h0, do, dht, scale, need_dg, need_dh0, chunk_size)
    return (dq, dk, dv, dg.to(log_g.dtype) if need_dg else q.new_empty(0),
            dh0.to(h0.dtype) if need_dh0 else q.new_empty(0))


@chunked_linear_attention_bwd_op.register_fake
def _(q, k, v, log_g, h0, do, dht, scale, need_dg, need_dh0, chunk_size):
    # contiguous, as the real op's (a compiled graph lays out what follows by these strides)
    dg = log_g.new_empty(log_g.shape) if need_dg and log_g is not None else q.new_empty(0)
    dh0 = h0.new_empty(h0.shape) if need_dh0 and h0 is not None else q.new_empty(0)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dg, dh0


def _setup(ctx, inputs, output):
    q, k, v, log_g, h0, scale, _, chunk_size = inputs
    ctx.save_for_backward(q, k, v, log_g, h0)
    ctx.scale, ctx.chunk_size = scale, chunk_size


def _backward(ctx, do, dht):
    q, k, v, log_g, h0 = ctx.saved_tensors
    need_dg, need_dh0 = ctx.needs_input_grad[3], ctx.needs_input_grad[4]
    if dht is not None and not dht.numel():  # no final state was asked for
        dht = None
    dq, dk, dv, dg, dh0 = chunked_linear_attention_bwd_op(q, k, v, log_g, h0, do, dht, ctx.scale, need_dg,
                                                          need_dh0, ctx.chunk_size)
    return (dq, dk, dv, dg if need_dg and log_g is not None else None,
            dh0 if need_dh0 and h0 is not None else None, None, None, None)


chunked_linear_attention_op.register_autograd(_backward, setup_context=_setup)
register_fold(chunked_linear_attention_op, fold_args=(0, 1, 2, 3, 4))


def chunked_linear_attention(q, k, v, log_g, scale, initial_state, output_final_state, chunk_size):
    """Run the kernels (``log_g`` None, ``[B, H, L]`` or ``[B, H, L, K]``); arguments as
    :func:`mad_bench.ops.gla.chunk_simple_gla`, ``chunk_size`` the block ``BT`` (None: heuristic)."""
    for t in (q, k, v):
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"the Triton kernel takes fp32 / bf16 / fp16, got {t.dtype}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)  # no-ops when they agree
    if log_g is not None and log_g.dim() == q.dim():
        o, ht, *_ = gla_op(q, k, v, log_g, initial_state, scale, bool(output_final_state), chunk_size,
                           two_level.dot_operands_mode())
    else:
        o, ht = chunked_linear_attention_op(q, k, v, log_g, initial_state, scale, bool(output_final_state),
                                            chunk_size)
    return (o, ht) if output_final_state else o
