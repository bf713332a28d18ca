"""Mamba-1 selective scan (Gu & Dao 2023) in Triton, forward and backward.

Argument convention of mamba's ``selective_scan_fn``: ``u, delta[b, d, l]``, ``A[d, n]``,
``B, C[b, n, l]`` (shared across channels), ``D[d]``, ``z[b, d, l]``, ``delta_bias[d]``::

    delta <- softplus(delta + delta_bias)          (bias / softplus optional)
    h_t    = exp(delta_t A) * h_{t-1} + delta_t u_t B_t          h: [b, d, n]
    y_t    = sum_n C_t[n] h_t[:, n] + D u_t ;   y <- y * silu(z)

Any strides are accepted (the Mamba layer passes time-major ``[b, l, d]`` tensors transposed,
without a copy); the output has ``u``'s layout and dtype. All arithmetic is fp32.

Kernels: one program per (batch, block of BLOCK_D channels). Time is cut into chunks of T
steps; a chunk's ``[BLOCK_D, N, T]`` decays and inputs are scanned with a tuple
``tl.associative_scan`` (exact: only products of decays in (0, 1], no division) and the carried
state ``[BLOCK_D, N]`` stays in registers. The forward stores the state entering every chunk
(``[b, chunks + 1, d, n]`` fp32; the last entry is the final state). The backward walks the
chunks in reverse: it recomputes the chunk's states from its checkpoint, the gradient wrt the
states by a reverse tuple scan (the carried gradient enters at the chunk's last step), and uses
``a_t h_{t-1} = h_t - x_t`` (no division). ``dB``/``dC`` (reductions over channels) are fp32
atomic adds; ``dA``/``dD``/``ddelta_bias`` are per-batch partials summed by torch.
"""
from __future__ import annotations

import torch

from ..vmap_rules import vmap_apply
from ..dispatch import jit, next_pow2, pick, tl, triton

__all__ = ["selective_scan_triton", "SelectiveScanFunction"]


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
    L, DIM, N, NC,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    dn_m = dm[:, None] & nm[None, :]
    Am = tl.load(A + d[:, None] * N + n[None, :], mask=dn_m, other=0.0).to(tl.float32)
    if HAS_D:
        Dp = tl.load(DV + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * (NC + 1) * DIM * N + d[:, None] * N + n[None, :]
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for c in range(NC):
        tl.store(ck + c * DIM * N, h, mask=dn_m)
        t = c * T + tt
        tm = t < L
        m2 = dm[:, None] & tm[None, :]
        mn = nm[:, None] & tm[None, :]
        u = tl.load(U + pid_b * s_ub + d[:, None] * s_ud + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        dl = tl.load(DELTA + pid_b * s_db + d[:, None] * s_dd + t[None, :] * s_dl, mask=m2, other=0.0).to(tl.float32)
        if HAS_DB:
            dl += bias[:, None]
        if SOFTPLUS:
            dl = _softplus(dl)
        dl = tl.where(m2, dl, 0.0)  # padded steps: decay 1, no input
        Bt = tl.load(BM + pid_b * s_bb + n[:, None] * s_bn + t[None, :] * s_bl, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + n[:, None] * s_cn + t[None, :] * s_cl, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, None, :] * Am[:, :, None])  # [BD, BN, T]
        x = (dl * u)[:, None, :] * Bt[None, :, :]
        sa, sx = tl.associative_scan((a, x), axis=2, combine_fn=_lin_combine)
        hs = sx + sa * h[:, :, None]
        y = tl.sum(hs * Ct[None, :, :], axis=1)  # [BD, T]
        h = tl.sum(tl.where((tt == T - 1)[None, None, :], hs, 0.0), axis=2)
        if HAS_D:
            y += Dp[:, None] * u
        if HAS_Z:
            zz = tl.load(Z + pid_b * s_zb + d[:, None] * s_zd + t[None, :] * s_zl, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + pid_b * s_ob + d[:, None] * s_od + t[None, :] * s_ol, y.to(OUT.dtype.element_ty), mask=m2)
    tl.store(ck + NC * DIM * N, h, mask=dn_m)


@jit
def _ss_bwd_kernel(
    U, DELTA, A, BM, CM, DV, Z, DBIAS, DOUT, CKPT,
    DU, DDELTA, DZ, DB_ACC, DC_ACC, DA_PART, DD_PART, DBIAS_PART,
    L, DIM, N, NC,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_bb, s_bn, s_bl, s_cb, s_cn, s_cl,
    s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_dub, s_dud, s_dul, s_ddb, s_ddd, s_ddl, s_dzb, s_dzd, s_dzl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < DIM
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    tt = tl.arange(0, T)
    dn_m = dm[:, None] & nm[None, :]
    Am = tl.load(A + d[:, None] * N + n[None, :], mask=dn_m, other=0.0).to(tl.float32)
    if HAS_D:
        Dp = tl.load(DV + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_DB:
        bias = tl.load(DBIAS + d, mask=dm, other=0.0).to(tl.float32)
    ck = CKPT + pid_b * (NC + 1) * DIM * N + d[:, None] * N + n[None, :]
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # dLoss/dh at the chunk's end, from later steps
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for ci in range(NC):
        c = NC - 1 - ci
        h0 = tl.load(ck + c * DIM * N, mask=dn_m, other=0.0)
        t = c * T + tt
        tm = t < L
        m2 = dm[:, None] & tm[None, :]
        mn = nm[:, None] & tm[None, :]
        u = tl.load(U + pid_b * s_ub + d[:, None] * s_ud + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        draw = tl.load(DELTA + pid_b * s_db + d[:, None] * s_dd + t[None, :] * s_dl, mask=m2, other=0.0).to(tl.float32)
        # delta at t + 1 (the decay that multiplies the gradient carried back from step t + 1)
        t1 = t + 1
        m21 = dm[:, None] & (t1 < L)[None, :]
        draw1 = tl.load(DELTA + pid_b * s_db + d[:, None] * s_dd + t1[None, :] * s_dl, mask=m21, other=0.0).to(tl.float32)
        if HAS_DB:
            draw += bias[:, None]
            draw1 += bias[:, None]
        if SOFTPLUS:
            dl = _softplus(draw)
            dl1 = _softplus(draw1)
        else:
            dl = draw
            dl1 = draw1
        dl = tl.where(m2, dl, 0.0)
        dl1 = tl.where(m21, dl1, 0.0)
        Bt = tl.load(BM + pid_b * s_bb + n[:, None] * s_bn + t[None, :] * s_bl, mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(CM + pid_b * s_cb + n[:, None] * s_cn + t[None, :] * s_cl, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp(dl[:, None, :] * Am[:, :, None])
        x = (dl * u)[:, None, :] * Bt[None, :, :]
        sa, sx = tl.associative_scan((a, x), axis=2, combine_fn=_lin_combine)
        hs = sx + sa * h0[:, :, None]
        go = tl.load(DOUT + pid_b * s_gb + d[:, None] * s_gd + t[None, :] * s_gl, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dp[:, None] * u
            zz = tl.load(Z + pid_b * s_zb + d[:, None] * s_zd + t[None, :] * s_zl, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            dz = go * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(DZ + pid_b * s_dzb + d[:, None] * s_dzd + t[None, :] * s_dzl, dz.to(DZ.dtype.element_ty), mask=m2)
            dy = go * zz * sz
        else:
            dy = go
        # reverse scan: g_t = dy_t C_t + a_{t+1} g_{t+1}; the carry enters at the chunk's last step
        a1 = tl.exp(dl1[:, None, :] * Am[:, :, None])
        rhs = dy[:, None, :] * Ct[None, :, :]
        rhs = tl.where((tt == T - 1)[None, None, :], rhs + carry[:, :, None], rhs)
        _, g = tl.associative_scan((a1, rhs), axis=2, combine_fn=_lin_combine, reverse=True)
        carry = tl.sum(tl.where((tt == 0)[None, None, :], a * g, 0.0), axis=2)
        ah = hs - x  # a_t h_{t-1}
        dA_acc += tl.sum(g * ah * dl[:, None, :], axis=2)
        gB = tl.sum(g * Bt[None, :, :], axis=1)  # [BD, T]
        ddl = gB * u + tl.sum(g * ah * Am[:, :, None], axis=1)
        du = gB * dl
        if HAS_D:
            du += Dp[:, None] * dy
            dD_acc += tl.sum(dy * u, axis=1)
        dBc = tl.sum(g * (dl * u)[:, None, :], axis=0)  # [BN, T]
        dCc = tl.sum(hs * dy[:, None, :], axis=0)
        boff = pid_b * N * L + n[:, None] * L + t[None, :]
        tl.atomic_add(DB_ACC + boff, dBc, mask=mn)
        tl.atomic_add(DC_ACC + boff, dCc, mask=mn)
        if SOFTPLUS:
            ddl = ddl * tl.sigmoid(draw)
        ddl = tl.where(m2, ddl, 0.0)
        if HAS_DB:
            dbias_acc += tl.sum(ddl, axis=1)
        tl.store(DU + pid_b * s_dub + d[:, None] * s_dud + t[None, :] * s_dul, du.to(DU.dtype.element_ty), mask=m2)
        tl.store(DDELTA + pid_b * s_ddb + d[:, None] * s_ddd + t[None, :] * s_ddl, ddl.to(DDELTA.dtype.element_ty), mask=m2)
    tl.store(DA_PART + pid_b * DIM * N + d[:, None] * N + n[None, :], dA_acc, mask=dn_m)
    if HAS_D:
        tl.store(DD_PART + pid_b * DIM + d, dD_acc, mask=dm)
    if HAS_DB:
        tl.store(DBIAS_PART + pid_b * DIM + d, dbias_acc, mask=dm)


# ----------------------------------------------------------------------------- launch
def _cfg(dim: int, n: int, bwd: bool = False) -> dict:
    # forward and backward must use the same T (the checkpoints sit at chunk boundaries)
    BN = next_pow2(n)
    T = 32 if BN <= 4 else 16
    BD = max(1, min(next_pow2(dim), 2048 // (BN * T)))
    # interpreter: few, large programs (each program instance costs ~1 ms)
    return pick(dict(BLOCK_D=BD, BLOCK_N=BN, T=T, num_warps=8 if bwd else 4),
                dict(BLOCK_D=min(next_pow2(dim), 16), BLOCK_N=BN, T=16))


def _s(t):
    return (0, 0, 0) if t is None else tuple(t.stride())


def _ss_fwd(u, delta, A, B, C, D, z, bias, softplus):
    b, dim, l = u.shape
    n = A.shape[1]
    cfg = _cfg(dim, n)
    nc = triton.cdiv(l, cfg["T"])
    out = torch.empty_like(u)
    ckpt = torch.empty((b, nc + 1, dim, n), device=u.device, dtype=torch.float32)
    grid = (b, triton.cdiv(dim, cfg["BLOCK_D"]))
    _ss_fwd_kernel[grid](
        u, delta, A, B, C, D, z, bias, out, ckpt, l, dim, n, nc,
        *_s(u), *_s(delta), *_s(B), *_s(C), *_s(z), *_s(out),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=bias is not None, SOFTPLUS=softplus, **cfg,
    )
    return out, ckpt


def _ss_bwd(u, delta, A, B, C, D, z, bias, softplus, ckpt, dout):
    b, dim, l = u.shape
    n = A.shape[1]
    cfg = _cfg(dim, n, bwd=True)
    nc = ckpt.shape[1] - 1
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dB = torch.zeros((b, n, l), device=u.device, dtype=torch.float32)
    dC = torch.zeros((b, n, l), device=u.device, dtype=torch.float32)
    dA_part = torch.empty((b, dim, n), device=u.device, dtype=torch.float32)
    dD_part = torch.empty((b, dim), device=u.device, dtype=torch.float32) if D is not None else None
    dbias_part = torch.empty((b, dim), device=u.device, dtype=torch.float32) if bias is not None else None
    grid = (b, triton.cdiv(dim, cfg["BLOCK_D"]))
    _ss_bwd_kernel[grid](
        u, delta, A, B, C, D, z, bias, dout, ckpt,
        du, ddelta, dz, dB, dC, dA_part, dD_part, dbias_part,
        l, dim, n, nc,
        *_s(u), *_s(delta), *_s(B), *_s(C), *_s(z), *_s(dout), *_s(du), *_s(ddelta), *_s(dz),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=bias is not None, SOFTPLUS=softplus, **cfg,
    )
    return (du, ddelta, dA_part.sum(0), dB, dC,
            dD_part.sum(0) if D is not None else None, dz,
            dbias_part.sum(0) if bias is not None else None)


class SelectiveScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        if u.dim() != 3 or delta.shape != u.shape:
            raise ValueError(f"u, delta must be [b, d, l] of one shape, got {tuple(u.shape)}, {tuple(delta.shape)}")
        b, dim, l = u.shape
        if A.shape[0] != dim or B.shape != (b, A.shape[1], l) or C.shape != B.shape:
            raise ValueError(f"A must be [d, n] and B, C [b, n, l]; got A {tuple(A.shape)}, "
                             f"B {tuple(B.shape)}, C {tuple(C.shape)} for u {tuple(u.shape)}")
        A_ = A.float().contiguous()
        D_ = D.contiguous() if D is not None else None
        bias_ = delta_bias.contiguous() if delta_bias is not None else None
        out, ckpt = _ss_fwd(u, delta, A_, B, C, D_, z, bias_, bool(delta_softplus))
        ctx.save_for_backward(u, delta, A_, B, C, D_, z, bias_, ckpt)
        ctx.softplus = bool(delta_softplus)
        ctx.dtypes = (A.dtype, B.dtype, C.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A_, B, C, D_, z, bias_, ckpt = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dz, dbias = _ss_bwd(u, delta, A_, B, C, D_, z, bias_, ctx.softplus, ckpt, dout)
        a_dt, b_dt, c_dt = ctx.dtypes
        return (du, ddelta, dA.to(a_dt), dB.to(b_dt), dC.to(c_dt),
                dD.to(D_.dtype) if dD is not None else None, dz,
                dbias.to(bias_.dtype) if dbias is not None else None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The Triton path of :func:`mad_bench.ops.selective_scan.selective_scan` (B, C ``[b, n, l]``)."""
    return vmap_apply(SelectiveScanFunction.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                      fold_args=(0, 1, 3, 4, 6))
