"""Mamba-1 selective scan (Gu & Dao 2023) in Triton, forward and backward.

Argument convention of mamba's ``selective_scan_fn``: ``u, delta[b, d, l]``, ``A[d, n]``,
``B, C[b, n, l]`` (shared across channels), ``D[d]``, ``z[b, d, l]``, ``delta_bias[d]``::

    delta <- softplus(delta + delta_bias)          (bias / softplus optional)
    h_t    = exp(delta_t A) * h_{t-1} + delta_t u_t B_t          h: [b, d, n]
    y_t    = sum_n C_t[n] h_t[:, n] + D u_t ;   y <- y * silu(z)

Per-member parameters: ``A[G, d, n]``, ``D[G, d]``, ``delta_bias[G, d]`` (each optional, any
mix) give batch row ``r`` the parameters of member ``r // (b / G)``: the ensemble engine's
vmap rule folds G members into the batch and calls the kernels once (see
:func:`selective_scan_triton`).

Any strides are accepted (the Mamba layer passes time-major ``[b, l, d]`` tensors transposed,
without a copy); the output has ``u``'s layout and dtype. All arithmetic is fp32.

Kernels: one launch per direction, one program per (batch row, block of BLOCK_D channels).
Time is cut into chunks of T steps; a chunk's ``[T, BLOCK_D]`` tiles of u, delta, z (and the
output) are loaded time-major (contiguous channels: coalesced for the layer's layout), its
``[T, BLOCK_D, N]`` decays and inputs are scanned with a tuple ``tl.associative_scan`` over
time (exact: only products of decays in (0, 1], no division), and the state ``[BLOCK_D, N]``
is carried between chunks in registers. Every input is read once and ``y`` written once;
the only extra traffic is the state entering each chunk (``[b, chunks, d, n]`` fp32, 1/T of
a state per step), stored by the forward for the backward.

The backward walks the chunks in reverse: it recomputes the chunk's states from its
checkpoint, gets the gradient wrt the states by a reverse tuple scan (the gradient carried
from the next chunk enters at the chunk's last step), and uses ``a_t h_{t-1} = h_t - x_t`` (no
division). ``dB``/``dC`` (sums over channels) are written per channel block and summed by
torch (no atomics), ``dA``/``dD``/``ddelta_bias`` are per-row partials summed by torch.

Two kernel pairs (:data:`VARIANTS`, picked per direction by ``CONFIG_OVERRIDE`` keys
``variant_fwd`` / ``variant_bwd``; both keep the checkpoints as ``[b, chunks, d, n]``, so they
mix). "tile" (the default): ``[T, BLOCK_D, N]`` tiles, N on 4 lanes, so every sum over states
is a cross-lane shuffle, and the backward's reverse scan needs the decay of step t + 1 (a
second load, softplus and exp of delta). "lane": ``[T, N, BLOCK_D]`` tiles, one channel per
lane, a chunk's T x N states of a channel in one thread: the scans over time and the sums over
states run in registers, only ``dB``/``dC`` sum across lanes; the gradient recurrence is an
unrolled loop over the chunk's steps (rows picked by constant masks, which fold away) carrying
each step's own decay, so delta is read once. Compiled for sm_90 (``benchmarks/scan_sm90.py``;
T 8, BLOCK_D 32, 1 warp, against the default config) its backward has ~80 instead of ~145 PTX
instructions per state and step, 10 instead of 20 shuffles per state and step (all of them the
dB / dC sums across lanes), 6 instead of 43 barriers per chunk, 255 registers and ~120 bytes of
spills; not yet timed on a GPU.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..vmap_rules import member_count, member_sum, register_fold
from ..dispatch import jit, next_pow2, pick, tl, triton

__all__ = ["selective_scan_triton", "selective_scan_op", "CONFIG_OVERRIDE"]

# Launch-config override for tuning runs (benchmarks/scan_check.py --sweep): keys T, BLOCK_D,
# num_warps_fwd, num_warps_bwd, stages_fwd, stages_bwd, variant_fwd, variant_bwd (a key of
# VARIANTS). Empty: the heuristic of :func:`_cfg`.
CONFIG_OVERRIDE: dict = {}


# ----------------------------------------------------------------------------- kernels
@jit
def _lin_combine(a1, b1, a2, b2):
    # composition of h -> a1 h + b1 then h -> a2 h + b2
    return a1 * a2, a2 * b1 + b2


@jit
def _softplus(x):
    # log1p(exp(x)) accurately (Goldberg's log1p), x for x > 20 as torch does
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(x > 20.0, x, lp)


@jit
def _ss_fwd_kernel(
    U, DELTA, A, BM, CM, DV, Z, DBIAS, OUT, CKPT,
    L, DIM, N, NC, RPM, s_am, s_dm, s_biasm,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
    STAGES: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    mem = pid_b // RPM  # member of this batch row (per-member parameters)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    dn_m = dm[:, None] & nm[None, :]
    Am = tl.load(A + mem * s_am + d[:, None] * N + n[None, :], mask=dn_m, other=0.0).to(tl.float32)
    if HAS_D:
        Dp = tl.load(DV + mem * s_dm + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + mem * s_biasm + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * NC * DIM * N + d[:, None] * N + n[None, :]
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for c in tl.range(0, NC, num_stages=STAGES):
        if STORE_CKPT:
            tl.store(ck + c * DIM * N, h, mask=dn_m)
        t = c * T + tt
        tm = t < L
        m2 = tm[:, None] & dm[None, :]  # [T, BD]
        mn = tm[:, None] & nm[None, :]  # [T, BN]
        u = tl.load(U + pid_b * s_ub + t[:, None] * s_ul + d[None, :] * s_ud, mask=m2, other=0.0).to(tl.float32)
        dl = tl.load(DELTA + pid_b * s_db + t[:, None] * s_dl + d[None, :] * s_dd, mask=m2, other=0.0).to(tl.float32)
        if HAS_DB:
            dl += bias[None, :]
        if SOFTPLUS:
            dl = _softplus(dl)
        dl = tl.where(m2, dl, 0.0)  # padded steps: decay 1, no input
        Bt = tl.load(BM + pid_b * s_bb + t[:, None] * s_bl + n[None, :] * s_bn, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + t[:, None] * s_cl + n[None, :] * s_cn, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, :, None] * Am[None, :, :])  # [T, BD, BN]
        x = (dl * u)[:, :, None] * Bt[:, None, :]
        sa, sx = tl.associative_scan((a, x), axis=0, combine_fn=_lin_combine)
        hs = sx + sa * h[None, :, :]
        y = tl.sum(hs * Ct[:, None, :], axis=2)  # [T, BD]
        h = tl.sum(tl.where((tt == T - 1)[:, None, None], hs, 0.0), axis=0)
        if HAS_D:
            y += Dp[None, :] * u
        if HAS_Z:
            zz = tl.load(Z + pid_b * s_zb + t[:, None] * s_zl + d[None, :] * s_zd, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + pid_b * s_ob + t[:, None] * s_ol + d[None, :] * s_od, y.to(OUT.dtype.element_ty), mask=m2)


@jit
def _ss_bwd_kernel(
    U, DELTA, A, BM, CM, DV, Z, DBIAS, DOUT, CKPT,
    DU, DDELTA, DZ, DB_PART, DC_PART, DA_PART, DD_PART, DBIAS_PART,
    L, DIM, N, NC, RPM, s_am, s_dm, s_biasm,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_dub, s_dud, s_dul, s_ddb, s_ddd, s_ddl, s_dzb, s_dzd, s_dzl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr, STAGES: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_dblk = tl.num_programs(1)
    mem = pid_b // RPM
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    dn_m = dm[:, None] & nm[None, :]
    Am = tl.load(A + mem * s_am + d[:, None] * N + n[None, :], mask=dn_m, other=0.0).to(tl.float32)
    if HAS_D:
        Dp = tl.load(DV + mem * s_dm + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + mem * s_biasm + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * NC * DIM * N + d[:, None] * N + n[None, :]
    # dB / dC partials of this channel block: [b, n_dblk, l, n] fp32
    part = (pid_b * n_dblk + pid_d) * L * N
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # dLoss/dh_{chunk end}, from later steps
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for ci in tl.range(0, NC, num_stages=STAGES):
        c = NC - 1 - ci
        h0 = tl.load(ck + c * DIM * N, mask=dn_m, other=0.0)
        t = c * T + tt
        tm = t < L
        m2 = tm[:, None] & dm[None, :]
        mn = tm[:, None] & nm[None, :]
        u = tl.load(U + pid_b * s_ub + t[:, None] * s_ul + d[None, :] * s_ud, mask=m2, other=0.0).to(tl.float32)
        draw = tl.load(DELTA + pid_b * s_db + t[:, None] * s_dl + d[None, :] * s_dd, mask=m2, other=0.0).to(tl.float32)
        # delta at t + 1 within the chunk: the decay that carries g_{t+1} back to step t (the
        # chunk's last row takes the next chunk's gradient through ``carry``, already decayed)
        t1 = t + 1
        m21 = ((tt < T - 1) & (t1 < L))[:, None] & dm[None, :]
        draw1 = tl.load(DELTA + pid_b * s_db + t1[:, None] * s_dl + d[None, :] * s_dd, mask=m21, other=0.0).to(tl.float32)
        if HAS_DB:
            draw += bias[None, :]
            draw1 += bias[None, :]
        if SOFTPLUS:
            dl = _softplus(draw)
            dl1 = _softplus(draw1)
        else:
            dl = draw
            dl1 = draw1
        dl = tl.where(m2, dl, 0.0)
        dl1 = tl.where(m21, dl1, 0.0)
        Bt = tl.load(BM + pid_b * s_bb + t[:, None] * s_bl + n[None, :] * s_bn, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + t[:, None] * s_cl + n[None, :] * s_cn, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, :, None] * Am[None, :, :])  # [T, BD, BN]
        x = (dl * u)[:, :, None] * Bt[:, None, :]
        sa, sx = tl.associative_scan((a, x), axis=0, combine_fn=_lin_combine)
        hs = sx + sa * h0[None, :, :]
        go = tl.load(DOUT + pid_b * s_gb + t[:, None] * s_gl + d[None, :] * s_gd, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Ct[:, None, :], axis=2)
            if HAS_D:
                y += Dp[None, :] * u
            zz = tl.load(Z + pid_b * s_zb + t[:, None] * s_zl + d[None, :] * s_zd, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            dz = go * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(DZ + pid_b * s_dzb + t[:, None] * s_dzl + d[None, :] * s_dzd, dz.to(DZ.dtype.element_ty), mask=m2)
            dy = go * zz * sz
        else:
            dy = go
        # reverse scan: g_t = dy_t C_t + a_{t+1} g_{t+1}; the carry enters at the chunk's last step
        a1 = tl.exp(dl1[:, :, None] * Am[None, :, :])
        rhs = dy[:, :, None] * Ct[:, None, :]
        rhs = tl.where((tt == T - 1)[:, None, None], rhs + carry[None, :, :], rhs)
        _, g = tl.associative_scan((a1, rhs), axis=0, combine_fn=_lin_combine, reverse=True)
        carry = tl.sum(tl.where((tt == 0)[:, None, None], a * g, 0.0), axis=0)
        ah = hs - x  # a_t h_{t-1}
        gah = g * ah
        dA_acc += tl.sum(gah * dl[:, :, None], axis=0)
        gB = tl.sum(g * Bt[:, None, :], axis=2)  # [T, BD]
        ddl = gB * u + tl.sum(gah * Am[None, :, :], axis=2)
        du = gB * dl
        if HAS_D:
            du += Dp[None, :] * dy
            dD_acc += tl.sum(dy * u, axis=0)
        dBc = tl.sum(g * (dl * u)[:, :, None], axis=1)  # [T, BN]
        dCc = tl.sum(hs * dy[:, :, None], axis=1)
        poff = part + t[:, None] * N + n[None, :]
        tl.store(DB_PART + poff, dBc, mask=mn)
        tl.store(DC_PART + poff, dCc, mask=mn)
        if SOFTPLUS:
            ddl = ddl * tl.sigmoid(draw)
        ddl = tl.where(m2, ddl, 0.0)
        if HAS_DB:
            dbias_acc += tl.sum(ddl, axis=0)
        tl.store(DU + pid_b * s_dub + t[:, None] * s_dul + d[None, :] * s_dud, du.to(DU.dtype.element_ty), mask=m2)
        tl.store(DDELTA + pid_b * s_ddb + t[:, None] * s_ddl + d[None, :] * s_ddd, ddl.to(DDELTA.dtype.element_ty), mask=m2)
    tl.store(DA_PART + pid_b * DIM * N + d[:, None] * N + n[None, :], dA_acc, mask=dn_m)
    if HAS_D:
        tl.store(DD_PART + pid_b * DIM + d, dD_acc, mask=dm)
    if HAS_DB:
        tl.store(DBIAS_PART + pid_b * DIM + d, dbias_acc, mask=dm)


@jit
def _ss_fwd_lane_kernel(
    U, DELTA, A, BM, CM, DV, Z, DBIAS, OUT, CKPT,
    L, DIM, N, NC, RPM, s_am, s_dm, s_biasm,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
    STAGES: tl.constexpr,
):
    # variant "lane": tiles [T, BLOCK_N, BLOCK_D], channels last (one channel per lane), so the
    # scan over time and the sum over states both stay inside a thread
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    mem = pid_b // RPM
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    nd_m = nm[:, None] & dm[None, :]
    Am = tl.load(A + mem * s_am + d[None, :] * N + n[:, None], mask=nd_m, other=0.0).to(tl.float32)  # [BN, BD]
    if HAS_D:
        Dp = tl.load(DV + mem * s_dm + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + mem * s_biasm + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * NC * DIM * N + d[None, :] * N + n[:, None]
    h = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    # offsets inside a chunk (int32, loop-invariant); each chunk adds its first step's address
    o_u = tt[:, None] * s_ul + d[None, :] * s_ud
    o_d = tt[:, None] * s_dl + d[None, :] * s_dd
    o_z = tt[:, None] * s_zl + d[None, :] * s_zd
    o_o = tt[:, None] * s_ol + d[None, :] * s_od
    o_b = tt[:, None] * s_bl + n[None, :] * s_bn
    o_c = tt[:, None] * s_cl + n[None, :] * s_cn
    for c in tl.range(0, NC, num_stages=STAGES):
        if STORE_CKPT:
            tl.store(ck + c * DIM * N, h, mask=nd_m)
        t0 = tl.cast(c * T, tl.int64)
        t = c * T + tt
        tm = t < L
        m2 = tm[:, None] & dm[None, :]  # [T, BD]
        mn = tm[:, None] & nm[None, :]  # [T, BN]
        u = tl.load(U + pid_b * s_ub + t0 * s_ul + o_u, mask=m2, other=0.0).to(tl.float32)
        dl = tl.load(DELTA + pid_b * s_db + t0 * s_dl + o_d, mask=m2, other=0.0).to(tl.float32)
        if HAS_DB:
            dl += bias[None, :]
        if SOFTPLUS:
            dl = _softplus(dl)
        dl = tl.where(m2, dl, 0.0)  # padded steps: decay 1, no input
        Bt = tl.load(BM + pid_b * s_bb + t0 * s_bl + o_b, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + t0 * s_cl + o_c, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, None, :] * Am[None, :, :])  # [T, BN, BD]
        x = (dl * u)[:, None, :] * Bt[:, :, None]
        # the carried state enters at the chunk's first step: no cumulative decays needed
        x = tl.where((tt == 0)[:, None, None], x + a * h[None, :, :], x)
        _, hs = tl.associative_scan((a, x), axis=0, combine_fn=_lin_combine)
        y = tl.sum(hs * Ct[:, :, None], axis=1)  # [T, BD]
        h = tl.sum(tl.where((tt == T - 1)[:, None, None], hs, -0.0), axis=0)  # folds away (see the backward)
        if HAS_D:
            y += Dp[None, :] * u
        if HAS_Z:
            zz = tl.load(Z + pid_b * s_zb + t0 * s_zl + o_z, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + pid_b * s_ob + t0 * s_ol + o_o, y.to(OUT.dtype.element_ty), mask=m2)


@jit
def _ss_bwd_lane_kernel(
    U, DELTA, A, BM, CM, DV, Z, DBIAS, DOUT, CKPT,
    DU, DDELTA, DZ, DB_PART, DC_PART, DA_PART, DD_PART, DBIAS_PART,
    L, DIM, N, NC, RPM, s_am, s_dm, s_biasm,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_dub, s_dud, s_dul, s_ddb, s_ddd, s_ddl, s_dzb, s_dzd, s_dzl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr, STAGES: tl.constexpr,
):
    # variant "lane" of _ss_bwd_kernel: [T, BLOCK_N, BLOCK_D] tiles (recurrences over time and
    # sums over states inside a thread, only dB / dC sum across lanes); the gradient recurrence
    # walks back step by step with each step's own decay: no second load, softplus and exp of
    # delta at t + 1
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_dblk = tl.num_programs(1)
    mem = pid_b // RPM
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    nd_m = nm[:, None] & dm[None, :]
    Am = tl.load(A + mem * s_am + d[None, :] * N + n[:, None], mask=nd_m, other=0.0).to(tl.float32)  # [BN, BD]
    if HAS_D:
        Dp = tl.load(DV + mem * s_dm + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + mem * s_biasm + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * NC * DIM * N + d[None, :] * N + n[:, None]
    part = (pid_b * n_dblk + pid_d) * L * N
    # offsets inside a chunk (int32, loop-invariant); each chunk adds its first step's address
    o_u = tt[:, None] * s_ul + d[None, :] * s_ud
    o_d = tt[:, None] * s_dl + d[None, :] * s_dd
    o_g = tt[:, None] * s_gl + d[None, :] * s_gd
    o_z = tt[:, None] * s_zl + d[None, :] * s_zd
    o_du = tt[:, None] * s_dul + d[None, :] * s_dud
    o_dd = tt[:, None] * s_ddl + d[None, :] * s_ddd
    o_dz = tt[:, None] * s_dzl + d[None, :] * s_dzd
    o_b = tt[:, None] * s_bl + n[None, :] * s_bn
    o_c = tt[:, None] * s_cl + n[None, :] * s_cn
    o_p = tt[:, None] * N + n[None, :]
    carry = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)  # a_s g_s of the next chunk's first step s
    dA_acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for ci in tl.range(0, NC, num_stages=STAGES):
        c = NC - 1 - ci
        h0 = tl.load(ck + c * DIM * N, mask=nd_m, other=0.0)
        t0 = tl.cast(c * T, tl.int64)
        t = c * T + tt
        tm = t < L
        m2 = tm[:, None] & dm[None, :]
        mn = tm[:, None] & nm[None, :]
        u = tl.load(U + pid_b * s_ub + t0 * s_ul + o_u, mask=m2, other=0.0).to(tl.float32)
        draw = tl.load(DELTA + pid_b * s_db + t0 * s_dl + o_d, mask=m2, other=0.0).to(tl.float32)
        if HAS_DB:
            draw += bias[None, :]
        if SOFTPLUS:
            dl = _softplus(draw)
        else:
            dl = draw
        dl = tl.where(m2, dl, 0.0)
        Bt = tl.load(BM + pid_b * s_bb + t0 * s_bl + o_b, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + t0 * s_cl + o_c, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, None, :] * Am[None, :, :])  # [T, BN, BD]
        w = dl * u
        x = w[:, None, :] * Bt[:, :, None]
        _, hs = tl.associative_scan((a, tl.where((tt == 0)[:, None, None], x + a * h0[None, :, :], x)),
                                    axis=0, combine_fn=_lin_combine)
        go = tl.load(DOUT + pid_b * s_gb + t0 * s_gl + o_g, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Ct[:, :, None], axis=1)
            if HAS_D:
                y += Dp[None, :] * u
            zz = tl.load(Z + pid_b * s_zb + t0 * s_zl + o_z, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            dz = go * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(DZ + pid_b * s_dzb + t0 * s_dzl + o_dz, dz.to(DZ.dtype.element_ty), mask=m2)
            dy = go * zz * sz
        else:
            dy = go
        # g_t = dy_t C_t + a_{t+1} g_{t+1}, step by step from the chunk's last step (``carry``: a_s
        # g_s of the next chunk's first step s). Time is inside each thread, so picking row r with
        # a constant mask folds away at compile time (-0.0 is the exact identity of the sum): the
        # loop is one FMA per state and step, where tl.associative_scan(reverse=True) flips its
        # operands across lanes (sm_90: 192 shuffles per chunk at T 8)
        rhs = dy[:, None, :] * Ct[:, :, None]
        g = tl.zeros([T, BLOCK_N, BLOCK_D], dtype=tl.float32)
        for i in tl.static_range(T):
            row = (tt == T - 1 - i)[:, None, None]
            carry += tl.sum(tl.where(row, rhs, -0.0), axis=0)
            g = tl.where(row, carry[None, :, :], g)
            carry *= tl.sum(tl.where(row, a, -0.0), axis=0)
        gah = g * (hs - x)  # g_t a_t h_{t-1}
        dA_acc += tl.sum(gah * dl[:, None, :], axis=0)
        gB = tl.sum(g * Bt[:, :, None], axis=1)  # [T, BD]
        ddl = gB * u + tl.sum(gah * Am[None, :, :], axis=1)
        du = gB * dl
        if HAS_D:
            du += Dp[None, :] * dy
            dD_acc += tl.sum(dy * u, axis=0)
        dBc = tl.sum(g * w[:, None, :], axis=2)  # [T, BN]: the only sums across lanes
        dCc = tl.sum(hs * dy[:, None, :], axis=2)
        poff = part + t0 * N
        tl.store(DB_PART + poff + o_p, dBc, mask=mn)
        tl.store(DC_PART + poff + o_p, dCc, mask=mn)
        if SOFTPLUS:
            ddl = ddl * tl.sigmoid(draw)
        ddl = tl.where(m2, ddl, 0.0)
        if HAS_DB:
            dbias_acc += tl.sum(ddl, axis=0)
        tl.store(DU + pid_b * s_dub + t0 * s_dul + o_du, du.to(DU.dtype.element_ty), mask=m2)
        tl.store(DDELTA + pid_b * s_ddb + t0 * s_ddl + o_dd, ddl.to(DDELTA.dtype.element_ty), mask=m2)
    tl.store(DA_PART + pid_b * DIM * N + d[None, :] * N + n[:, None], dA_acc, mask=nd_m)
    if HAS_D:
        tl.store(DD_PART + pid_b * DIM + d, dD_acc, mask=dm)
    if HAS_DB:
        tl.store(DBIAS_PART + pid_b * DIM + d, dbias_acc, mask=dm)


# Kernel pairs (forward, backward) by variant; both keep the checkpoints as [b, chunks, d, n],
# so the variants of the two directions mix.
VARIANTS = {"tile": (_ss_fwd_kernel, _ss_bwd_kernel), "lane": (_ss_fwd_lane_kernel, _ss_bwd_lane_kernel)}


# ----------------------------------------------------------------------------- launch
def _cfg(dim: int, n: int) -> dict:
    """One config for both directions (the checkpoints sit at chunk boundaries, so forward and
    backward share T). BLOCK_D = 8 x num_warps: Triton's default 3D layout then puts N on 4
    lanes, channels on 8 lanes x the warps, and a chunk's T steps inside each thread, so the
    scans and the sums over time run sequentially in registers (no shuffles, no shared memory)
    and a thread holds T elements of each [T, BLOCK_D, N] tensor (N <= 4). ``STAGES`` > 1
    asks Triton to pipeline the next chunk's loads (``tl.range(num_stages=...)``). The variant
    "lane" wants BLOCK_D = 32 x num_warps (one channel per lane) and holds T x N elements per
    tensor and thread (T 8 keeps its backward within 255 registers). The default: lane for
    N <= 4 (MAD's Mamba), measured on an H200 (T 8, BLOCK_D 32, one warp, stages 2: fwd+bwd
    1.22 ms against the tile pair's 2.45 at (128, 1024, 128)); tile above."""
    BN = next_pow2(n)
    if BN <= 4:  # the lane kernels: 2.0x the tile pair at (128, 1024, 128) on an H200 (BENCHMARKS.md)
        cfg = pick(dict(BLOCK_D=32, BLOCK_N=BN, T=8, num_warps_fwd=1, num_warps_bwd=1, stages_fwd=2, stages_bwd=2),
                   dict(BLOCK_D=32, BLOCK_N=BN, T=8))
        cfg.update(variant_fwd="lane", variant_bwd="lane")
    else:  # a lane thread holds T x N elements per tensor: past N 4 the tile layout
        cfg = pick(dict(BLOCK_D=min(next_pow2(dim), 32), BLOCK_N=BN, T=8, num_warps_fwd=4, num_warps_bwd=4,
                        stages_fwd=2, stages_bwd=2),  # sweep on an H200 (BENCHMARKS.md): stages 2 best
                   # interpreter: few, large programs (each program instance costs ~1 ms)
                   dict(BLOCK_D=min(next_pow2(dim), 32), BLOCK_N=BN, T=8))
        cfg.update(variant_fwd="tile", variant_bwd="tile")
    for k, v in CONFIG_OVERRIDE.items():
        if k.startswith(("num_warps", "stages")) and "num_warps_fwd" not in cfg:
            continue  # interpreter
        cfg[k] = v
    for k in ("variant_fwd", "variant_bwd"):
        if cfg[k] not in VARIANTS:
            raise ValueError(f"CONFIG_OVERRIDE[{k!r}] must be one of {sorted(VARIANTS)}, got {cfg[k]!r}")
    return cfg


def _launch(cfg: dict, bwd: bool):
    """(kernel, its launch keywords) of one direction."""
    side = "bwd" if bwd else "fwd"
    kernel = VARIANTS[cfg[f"variant_{side}"]][int(bwd)]
    out = {k: v for k, v in cfg.items() if not k.startswith(("num_warps", "stages", "variant"))}
    out["STAGES"] = cfg.get(f"stages_{side}", 1)
    if f"num_warps_{side}" in cfg:
        out["num_warps"] = cfg[f"num_warps_{side}"]
    return kernel, out


def _s(t):
    return (0, 0, 0) if t is None else tuple(t.stride())


def _check_chunk_offsets(cfg: dict, side: str, **tensors) -> None:
    """The "lane" kernels address a chunk's [T, channels] tile by int32 offsets from its first step."""
    if cfg[f"variant_{side}"] != "lane":
        return
    for name, t in tensors.items():
        if t is not None and cfg["T"] * abs(t.stride(2)) + t.shape[1] * abs(t.stride(1)) >= 2**31:
            raise ValueError(f"variant 'lane': {name} {tuple(t.shape)} with strides {tuple(t.stride())} spans "
                             f">= 2**31 elements within one chunk of a batch row; use variant 'tile'")


def _members(b: int, A, D, bias) -> tuple[int, int, int, int, int]:
    """(members, rows per member, member strides of A, D, delta_bias): 0 stride for a shared parameter."""
    G = member_count(b, ("A", A, 2), ("D", D, 1), ("delta_bias", bias, 1))
    sa = A[0].numel() if A.dim() == 3 else 0
    sd = D.shape[-1] if D is not None and D.dim() == 2 else 0
    sb = bias.shape[-1] if bias is not None and bias.dim() == 2 else 0
    return G, b // G, sa, sd, sb


def _ss_fwd(u, delta, A, B, C, D, z, bias, softplus, store_ckpt=True):
    b, dim, l = u.shape
    n = A.shape[-1]
    cfg = _cfg(dim, n)
    nc = triton.cdiv(l, cfg["T"])
    out = torch.empty_like(u)
    ckpt = torch.empty((b, nc, dim, n) if store_ckpt else (1,), device=u.device, dtype=torch.float32)
    _, rpm, sa, sd, sb = _members(b, A, D, bias)
    grid = (b, triton.cdiv(dim, cfg["BLOCK_D"]))
    _check_chunk_offsets(cfg, "fwd", u=u, delta=delta, B=B, C=C, z=z, out=out)
    kernel, launch = _launch(cfg, bwd=False)
    kernel[grid](
        u, delta, A, B, C, D, z, bias, out, ckpt, l, dim, n, nc, rpm, sa, sd, sb,
        *_s(u), *_s(delta), *_s(B), *_s(C), *_s(z), *_s(out),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=bias is not None, SOFTPLUS=softplus,
        STORE_CKPT=store_ckpt, **launch,
    )
    return out, ckpt


def _ss_bwd(u, delta, A, B, C, D, z, bias, softplus, ckpt, dout):
    b, dim, l = u.shape
    n = A.shape[-1]
    cfg = _cfg(dim, n)
    nc = ckpt.shape[1]
    nblk = triton.cdiv(dim, cfg["BLOCK_D"])
    G, rpm, sa, sd, sb = _members(b, A, D, bias)
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dB_part = torch.empty((b, nblk, l, n), **f32)
    dC_part = torch.empty((b, nblk, l, n), **f32)
    dA_part = torch.empty((b, dim, n), **f32)
    dD_part = torch.empty((b, dim), **f32) if D is not None else None
    dbias_part = torch.empty((b, dim), **f32) if bias is not None else None
    _check_chunk_offsets(cfg, "bwd", u=u, delta=delta, B=B, C=C, z=z, dout=dout, du=du, ddelta=ddelta, dz=dz)
    kernel, launch = _launch(cfg, bwd=True)
    kernel[(b, nblk)](
        u, delta, A, B, C, D, z, bias, dout, ckpt,
        du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part,
        l, dim, n, nc, rpm, sa, sd, sb,
        *_s(u), *_s(delta), *_s(B), *_s(C), *_s(z), *_s(dout), *_s(du), *_s(ddelta), *_s(dz),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=bias is not None, SOFTPLUS=softplus,
        **launch,
    )
    dB = dB_part.sum(1).transpose(1, 2)  # [b, n, l]
    dC = dC_part.sum(1).transpose(1, 2)
    return (du, ddelta, member_sum(dA_part, A.dim() == 3, G), dB, dC,
            member_sum(dD_part, D.dim() == 2, G) if D is not None else None, dz,
            member_sum(dbias_part, bias.dim() == 2, G) if bias is not None else None)


def _check(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u, delta must be [b, d, l] of one shape, got {tuple(u.shape)}, {tuple(delta.shape)}")
    b, dim, l = u.shape
    n = A.shape[-1]
    if A.dim() not in (2, 3) or A.shape[-2] != dim or B.shape != (b, n, l) or C.shape != B.shape:
        raise ValueError(f"A must be [d, n] or [members, d, n] and B, C [b, n, l]; got A {tuple(A.shape)}, "
                         f"B {tuple(B.shape)}, C {tuple(C.shape)} for u {tuple(u.shape)}")
    for name, p in (("D", D), ("delta_bias", delta_bias)):
        if p is not None and (p.dim() not in (1, 2) or p.shape[-1] != dim):
            raise ValueError(f"{name} must be [d] or [members, d] with d = {dim}, got {tuple(p.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    member_count(b, ("A", A, 2), ("D", D, 1), ("delta_bias", delta_bias, 1))


def _ckpt_shape(u, A, store_ckpt: bool) -> tuple:
    """The checkpoints' shape ``[b, chunks, d, n]`` (no chunks when not stored)."""
    b, dim, l = u.shape
    return b, triton.cdiv(l, _cfg(dim, A.shape[-1])["T"]) if store_ckpt else 0, dim, A.shape[-1]


def _contig(t):
    return t.contiguous() if t is not None else None


@torch.library.custom_op("mad_bench::selective_scan", mutates_args=())
def selective_scan_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                      D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                      delta_softplus: bool, store_ckpt: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, checkpoints)``: the states entering each chunk, which the backward starts from
    (``[b, 0, d, n]`` when ``store_ckpt`` is off: no backward will run)."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    out, ckpt = _ss_fwd(u, delta, A.float().contiguous(), B, C, _contig(D), z, _contig(delta_bias),
                        delta_softplus, store_ckpt=store_ckpt)
    return out, ckpt if store_ckpt else ckpt.new_empty(_ckpt_shape(u, A, False))


@selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, store_ckpt):
    _check(u, delta, A, B, C, D, z, delta_bias)
    return torch.empty_like(u), u.new_empty(_ckpt_shape(u, A, store_ckpt), dtype=torch.float32)


@torch.library.custom_op("mad_bench::selective_scan_bwd", mutates_args=())
def selective_scan_bwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                          D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                          delta_softplus: bool, ckpt: torch.Tensor, dout: torch.Tensor) -> list[torch.Tensor]:
    """``[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias]`` in the inputs' dtypes; empty for an
    absent D, z, delta_bias (an op returns tensors)."""
    grads = _ss_bwd(u, delta, A.float().contiguous(), B, C, _contig(D), z, _contig(delta_bias),
                    delta_softplus, ckpt, dout)
    return [g.to(x.dtype) if g is not None else u.new_empty(0)
            for g, x in zip(grads, (u, delta, A, B, C, D, z, delta_bias))]


@selective_scan_bwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, ckpt, dout):
    b, n, l = B.shape
    return [torch.empty_like(u), torch.empty_like(delta), A.new_empty(A.shape),
            B.new_empty((b, l, n)).transpose(1, 2), C.new_empty((b, l, n)).transpose(1, 2),
            D.new_empty(D.shape) if D is not None else u.new_empty(0),
            torch.empty_like(z) if z is not None else u.new_empty(0),
            delta_bias.new_empty(delta_bias.shape) if delta_bias is not None else u.new_empty(0)]


def _setup(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, _ = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[1])
    ctx.softplus = delta_softplus
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, dout, _):
    u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
    g = selective_scan_bwd_op(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ckpt, dout)
    present = (True, True, True, True, True, D is not None, z is not None, delta_bias is not None)
    return (*(gi if p else None for gi, p in zip(g, present)), None, None)


selective_scan_op.register_autograd(_backward, setup_context=_setup)
register_fold(selective_scan_op, fold_args=(0, 1, 3, 4, 6), member_args=(2, 5, 7))


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The Triton path of :func:`mad_bench.ops.selective_scan.selective_scan` (B, C ``[b, n, l]``).

    Under the engine's vmap the activations (u, delta, B, C, z) fold into the batch and the
    per-member parameters (A, D, delta_bias) are passed with a leading member dim: one launch
    for all members."""
    # the checkpoints cost a state per chunk: kept only where a backward can follow
    return selective_scan_op(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), torch.is_grad_enabled())[0]
