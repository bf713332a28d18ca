"""RWKV-6's WKV (time mixing) in Triton, forward and backward.

``r, k, logw [B, H, L, K]``, ``v [B, H, L, V]``, ``u [H, K]`` (the bonus), state ``S [K, V]``
per (batch, head), ``S_{-1} = 0``, ``w_t = exp(logw_t)`` (``logw <= 0``)::

    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)
    S_t = diag(w_t) S_{t-1} + k_t^T v_t

as :func:`mad_bench.ops.rwkv6.reference.wkv6_chunked` (its torch reference).

Design: the **sequential recurrence**, one program per (batch*head, block of BV value columns)
with the ``[K, BV]`` state in registers (the value columns evolve independently). The forward
stores the state entering every CK-th step (fp32). The backward walks the chunks of CK steps in
reverse: it recomputes the chunk's states ``S_{t-1}`` forward from the checkpoint into a small
per-program scratch (``[CK, K, BV]`` fp32, L2-resident at MAD sizes), then runs the reverse
recurrence ``G_{t-1} = diag(w_t) G_t + r_t^T do_t`` over the chunk, reading ``S_{t-1}`` back for
``dr`` and the decay gradient ``dlogw_t = w_t . rowsum(G_t * S_{t-1})`` (exact: no division by
``w``, no cumulative-sum identity). ``dr, dk, dlogw`` (reductions over V) and ``du`` are per-V-block
fp32 partials summed by torch; ``dv`` is written directly. Any input strides are accepted.

Per-member bonus: ``u [G, H, K]`` gives batch row ``b`` member ``b // (B / G)``'s bonus and its
gradient comes back per member, so the ensemble engine's vmap rule folds G members into the
batch and launches once per direction.
"""
from __future__ import annotations

import torch

from ..dispatch import jit, state_block_config, tl, triton
from ..vmap_rules import member_count, member_sum, register_fold

__all__ = ["wkv6_triton", "wkv6_op"]


def _ck(bk: int, bv: int) -> int:
    return 32 if bk * bv <= 1024 else 16


@jit
def _wkv6_fwd_kernel(
    R, K, V, LW, U, O, CKPT,
    L, H, DK, DV, NCK, RPM,
    s_rb, s_rh, s_rl, s_rk, s_kb, s_kh, s_kl, s_kk, s_vb, s_vh, s_vl, s_vv,
    s_wb, s_wh, s_wl, s_wk, s_um, s_uh, s_uk, s_ob, s_oh, s_ol, s_ov,
    CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
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
    # the bonus of this row's member (s_um 0: shared)
    u = tl.load(U + (b // RPM) * s_um + h * s_uh + kk * s_uk, mask=km, other=0.0).to(tl.float32)
    rp = R + b * s_rb + h * s_rh + kk * s_rk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    vp = V + b * s_vb + h * s_vh + vv * s_vv
    wp = LW + b * s_wb + h * s_wh + kk * s_wk
    op = O + b * s_ob + h * s_oh + vv * s_ov
    cp = CKPT + bh * NCK * DK * DV + st_off
    S = tl.zeros([BK, BV], dtype=tl.float32)
    r_n = tl.load(rp, mask=km, other=0.0).to(tl.float32)
    k_n = tl.load(kp, mask=km, other=0.0).to(tl.float32)
    v_n = tl.load(vp, mask=vm, other=0.0).to(tl.float32)
    w_n = tl.load(wp, mask=km, other=0.0).to(tl.float32)
    for t in range(L):
        if t % CK == 0:
            tl.store(cp + (t // CK) * DK * DV, S, mask=m2)
        r_t = r_n
        k_t = k_n
        v_t = v_n
        w_t = tl.exp(w_n)
        tn = (t + 1) % L  # prefetch step t + 1 (wraps after the last step: unused)
        r_n = tl.load(rp + tn * s_rl, mask=km, other=0.0).to(tl.float32)
        k_n = tl.load(kp + tn * s_kl, mask=km, other=0.0).to(tl.float32)
        v_n = tl.load(vp + tn * s_vl, mask=vm, other=0.0).to(tl.float32)
        w_n = tl.load(wp + tn * s_wl, mask=km, other=0.0).to(tl.float32)
        ruk = tl.sum(r_t * u * k_t, axis=0)
        o = tl.sum(S * r_t[:, None], axis=0) + ruk * v_t
        tl.store(op + t * s_ol, o.to(O.dtype.element_ty), mask=vm)
        S = S * w_t[:, None] + k_t[:, None] * v_t[None, :]


@jit
def _wkv6_bwd_kernel(
    R, K, V, LW, U, DO, CKPT, SCR,
    DR_P, DK_P, DW_P, DU_P, DV_,
    L, H, DK, DV, NCK, BH, RPM,
    s_rb, s_rh, s_rl, s_rk, s_kb, s_kh, s_kl, s_kk, s_vb, s_vh, s_vl, s_vv,
    s_wb, s_wh, s_wl, s_wk, s_um, s_uh, s_uk, s_gb, s_gh, s_gl, s_gv, s_dvb, s_dvh, s_dvl, s_dvv,
    CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    bh = pid_bh.to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < DK
    vl = tl.arange(0, BV)
    vv = pid_v * BV + vl
    vm = vv < DV
    m2 = km[:, None] & vm[None, :]
    st_off = kk[:, None] * DV + vv[None, :]
    # the bonus of this row's member (s_um 0: shared)
    u = tl.load(U + (b // RPM) * s_um + h * s_uh + kk * s_uk, mask=km, other=0.0).to(tl.float32)
    rp = R + b * s_rb + h * s_rh + kk * s_rk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    vp = V + b * s_vb + h * s_vh + vv * s_vv
    wp = LW + b * s_wb + h * s_wh + kk * s_wk
    gp = DO + b * s_gb + h * s_gh + vv * s_gv
    cp = CKPT + bh * NCK * DK * DV + st_off
    part = pid_v.to(tl.int64) * BH + bh
    scp = SCR + part * CK * BK * BV + kk[:, None] * BV + vl[None, :]
    drp = DR_P + part * L * DK + kk
    dkp = DK_P + part * L * DK + kk
    dwp = DW_P + part * L * DK + kk
    dvp = DV_ + b * s_dvb + h * s_dvh + vv * s_dvv
    G = tl.zeros([BK, BV], dtype=tl.float32)  # dL/dS_t entering step t of the reverse pass
    du = tl.zeros([BK], dtype=tl.float32)
    for ci in range(NCK):
        t0 = (NCK - 1 - ci) * CK
        # 1. recompute the chunk's states S_{t-1}, t = t0 .. t0 + CK - 1, into the scratch
        S = tl.load(cp + (t0 // CK) * DK * DV, mask=m2, other=0.0)
        for s in range(CK):
            t = tl.minimum(t0 + s, L - 1)  # steps past the end recompute junk, never read
            tl.store(scp + s * BK * BV, S)
            k_t = tl.load(kp + t * s_kl, mask=km, other=0.0).to(tl.float32)
            v_t = tl.load(vp + t * s_vl, mask=vm, other=0.0).to(tl.float32)
            w_t = tl.exp(tl.load(wp + t * s_wl, mask=km, other=0.0).to(tl.float32))
            S = S * w_t[:, None] + k_t[:, None] * v_t[None, :]
        tl.debug_barrier()  # the scratch stores above are read back below by other threads
        # 2. the reverse recurrence over the chunk
        for s in range(CK):
            t = t0 + CK - 1 - s
            tk = kk * 0 + t
            kmt = km & (tk < L)  # steps past the end: zero inputs, w = 1 -> G unchanged
            vmt = vm & ((vl * 0 + t) < L)
            tc = tl.minimum(t, L - 1)
            Sp = tl.load(scp + (CK - 1 - s) * BK * BV)
            r_t = tl.load(rp + tc * s_rl, mask=kmt, other=0.0).to(tl.float32)
            k_t = tl.load(kp + tc * s_kl, mask=kmt, other=0.0).to(tl.float32)
            v_t = tl.load(vp + tc * s_vl, mask=vmt, other=0.0).to(tl.float32)
            w_t = tl.exp(tl.load(wp + tc * s_wl, mask=kmt, other=0.0).to(tl.float32))
            do = tl.load(gp + tc * s_gl, mask=vmt, other=0.0).to(tl.float32)
            vdo = tl.sum(v_t * do, axis=0)
            ruk = tl.sum(r_t * u * k_t, axis=0)
            dr = tl.sum(Sp * do[None, :], axis=1) + u * k_t * vdo
            dk = tl.sum(G * v_t[None, :], axis=1) + u * r_t * vdo
            dv = tl.sum(G * k_t[:, None], axis=0) + ruk * do
            dw = w_t * tl.sum(G * Sp, axis=1)
            du += r_t * k_t * vdo
            G = G * w_t[:, None] + r_t[:, None] * do[None, :]
            tl.store(drp + tc * DK, dr, mask=kmt)
            tl.store(dkp + tc * DK, dk, mask=kmt)
            tl.store(dwp + tc * DK, dw, mask=kmt)
            tl.store(dvp + tc * s_dvl, dv.to(DV_.dtype.element_ty), mask=vmt)
        tl.debug_barrier()  # the next chunk overwrites the scratch
    tl.store(DU_P + part * DK + kk, du, mask=km)


def _s4(t):
    return tuple(t.stride())


def _su(u):
    """u's (member, head, key) strides; member stride 0 for a shared ``[H, K]`` bonus."""
    return tuple(u.stride()) if u.dim() == 3 else (0, *u.stride())


def _check(r, k, v, logw, u):
    B, H, L, DK = r.shape
    member_count(B, ("u", u, 2))
    if k.shape != r.shape or logw.shape != r.shape or v.shape[:3] != (B, H, L) or u.shape[-2:] != (H, DK):
        raise ValueError(f"expected r, k, logw [B, H, L, K], v [B, H, L, V], u [H, K] or [members, H, K]; got "
                         f"{tuple(r.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, "
                         f"{tuple(logw.shape)}, {tuple(u.shape)}")


def _chunks(L: int, DK: int, DV: int) -> tuple[dict, int, int]:
    """(block config, checkpoint interval CK, checkpoints)."""
    cfg = state_block_config(DK, DV, interp_bv=16)
    ck = _ck(cfg["BK"], cfg["BV"])
    return cfg, ck, triton.cdiv(L, ck)


def wkv6_fwd(r, k, v, logw, u):
    """``(o, checkpoints)``: the states entering every CK-th step, ``[B * H, chunks, K, V]`` fp32."""
    B, H, L, DK = r.shape
    DV = v.shape[-1]
    G = member_count(B, ("u", u, 2))
    cfg, ck, nck = _chunks(L, DK, DV)
    o = torch.empty_like(v)
    ckpt = torch.empty((B * H, nck, DK, DV), device=r.device, dtype=torch.float32)
    grid = (B * H, triton.cdiv(DV, cfg["BV"]))
    _wkv6_fwd_kernel[grid](
        r, k, v, logw, u, o, ckpt, L, H, DK, DV, nck, B // G,
        *_s4(r), *_s4(k), *_s4(v), *_s4(logw), *_su(u), *_s4(o), CK=ck, **cfg,
    )
    return o, ckpt


def wkv6_bwd(r, k, v, logw, u, ckpt, do):
    """``(dr, dk, dv, dlogw, du)`` in the inputs' dtypes."""
    B, H, L, DK = r.shape
    DV = v.shape[-1]
    G = member_count(B, ("u", u, 2))
    cfg, ck, nck = _chunks(L, DK, DV)
    nv = triton.cdiv(DV, cfg["BV"])
    dev = r.device
    f32 = torch.float32
    dr_p = torch.empty((nv, B, H, L, DK), device=dev, dtype=f32)
    dk_p = torch.empty((nv, B, H, L, DK), device=dev, dtype=f32)
    dw_p = torch.empty((nv, B, H, L, DK), device=dev, dtype=f32)
    du_p = torch.empty((nv, B, H, DK), device=dev, dtype=f32)
    scr = torch.empty((nv * B * H, ck, cfg["BK"], cfg["BV"]), device=dev, dtype=f32)
    dv = torch.empty_like(v)
    _wkv6_bwd_kernel[(B * H, nv)](
        r, k, v, logw, u, do, ckpt, scr, dr_p, dk_p, dw_p, du_p, dv,
        L, H, DK, DV, nck, B * H, B // G,
        *_s4(r), *_s4(k), *_s4(v), *_s4(logw), *_su(u), *_s4(do), *_s4(dv),
        CK=ck, **cfg,
    )
    dr, dk, dw = (p[0] if nv == 1 else p.sum(0) for p in (dr_p, dk_p, dw_p))
    du = du_p.sum((0, 1)) if u.dim() == 2 else member_sum(du_p.sum(0), True, G)
    return dr.to(r.dtype), dk.to(k.dtype), dv, dw.to(logw.dtype), du.to(u.dtype)


@torch.library.custom_op("mad_bench::wkv6", mutates_args=())
def wkv6_op(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logw: torch.Tensor,
            u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o, checkpoints)`` (the backward starts from the checkpoints)."""
    _check(r, k, v, logw, u)
    return wkv6_fwd(r, k, v, logw, u)


@wkv6_op.register_fake
def _(r, k, v, logw, u):
    _check(r, k, v, logw, u)
    B, H, L, DK = r.shape
    DV = v.shape[-1]
    return torch.empty_like(v), r.new_empty((B * H, _chunks(L, DK, DV)[2], DK, DV), dtype=torch.float32)


@torch.library.custom_op("mad_bench::wkv6_bwd", mutates_args=())
def wkv6_bwd_op(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logw: torch.Tensor, u: torch.Tensor,
                ckpt: torch.Tensor, do: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                               torch.Tensor, torch.Tensor]:
    return wkv6_bwd(r, k, v, logw, u, ckpt, do)


@wkv6_bwd_op.register_fake
def _(r, k, v, logw, u, ckpt, do):
    return (r.new_empty(r.shape), k.new_empty(k.shape), torch.empty_like(v), logw.new_empty(logw.shape),
            u.new_empty(u.shape))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, do, _):
    return wkv6_bwd_op(*ctx.saved_tensors, do)


wkv6_op.register_autograd(_backward, setup_context=_setup)
register_fold(wkv6_op, fold_args=(0, 1, 2, 3), member_args=(4,))


def wkv6_triton(r, k, v, logw, u):
    """The Triton path of :func:`mad_bench.ops.rwkv6.wkv6`. Under the engine's vmap r, k, v,
    logw fold into the batch and a per-member bonus goes to the kernel as ``[G, H, K]``: one
    launch for all members."""
    return wkv6_op(r, k, v, logw, u)[0]
