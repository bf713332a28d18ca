"""DeltaNet's delta rule in Triton, forward and backward, in flash-linear-attention's layout.

``q, k [B, H, L, K]``, ``v [B, H, L, V]``, ``beta [B, H, L]``, states ``S [B, H, K, V]``::

    e_t = v_t - S_{t-1}^T k_t                       (what the state mis-recalls for k_t)
    S_t = S_{t-1} + beta_t k_t e_t^T  = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = scale * S_t^T q_t

Design: the **sequential recurrence**, one program per (batch*head, block of
BLOCK_V value columns) with the ``[K, BLOCK_V]`` state in registers -- the value columns of the
delta rule evolve independently, so the V axis splits across programs with no communication.
The forward stores ``e_t`` (fp32, ``[B*H, L, V]``) and the state every CK steps. The backward
runs the reverse recurrence and rebuilds ``S_{t-1} = S_t - beta_t k_t e_t^T`` exactly (the same
fp32 products the forward added; no division by ``1 - beta |k|^2``), restarting from the stored
state every CK steps so rounding never accumulates over more than CK steps. ``dq``, ``dk``,
``dbeta`` (reductions over V) are per-V-block fp32 partials summed by torch; ``dv`` and the
initial-state gradient are written directly. Any input strides are accepted.

The chunked WY / UT form (tensor-core matmuls per chunk) is not implemented here; the torch
reference :func:`mad_bench.ops.delta_rule.reference.chunk_delta_rule` has it.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..vmap_rules import register_fold
from ..dispatch import jit, state_block_config, tl, triton

__all__ = ["delta_rule_triton", "delta_rule_op"]

CK = 64  # state checkpoint interval of the backward's reconstruction (256 for states >= 64x64)


def _ck(dk: int, dv: int) -> int:
    return CK if dk * dv < 4096 else 4 * CK


@jit
def _dr_fwd_kernel(
    Q, K, V, BETA, S0, O, ERR, CKPT, SFIN,
    L, H, DK, DV, NCK, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_vb, s_vh, s_vl, s_vv,
    s_bb, s_bh, s_bl, s_ob, s_oh, s_ol, s_ov,
    HAS_S0: tl.constexpr, CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
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
    if HAS_S0:
        S = tl.load(S0 + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    qp = Q + b * s_qb + h * s_qh + kk * s_qk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    vp = V + b * s_vb + h * s_vh + vv * s_vv
    bp = BETA + b * s_bb + h * s_bh
    op = O + b * s_ob + h * s_oh + vv * s_ov
    ep = ERR + bh * L * DV + vv
    cp = CKPT + bh * NCK * DK * DV + st_off
    # software prefetch: step t + 1's inputs are loaded while step t computes
    k_n = tl.load(kp, mask=km, other=0.0).to(tl.float32)
    v_n = tl.load(vp, mask=vm, other=0.0).to(tl.float32)
    q_n = tl.load(qp, mask=km, other=0.0).to(tl.float32)
    b_n = tl.load(bp).to(tl.float32)
    for t in range(L):
        if t % CK == 0:
            tl.store(cp + (t // CK) * DK * DV, S, mask=m2)
        k_t = k_n
        v_t = v_n
        q_t = q_n
        b_t = b_n
        tn = (t + 1) % L  # wraps to 0 after the last step (loaded, unused)
        k_n = tl.load(kp + tn * s_kl, mask=km, other=0.0).to(tl.float32)
        v_n = tl.load(vp + tn * s_vl, mask=vm, other=0.0).to(tl.float32)
        q_n = tl.load(qp + tn * s_ql, mask=km, other=0.0).to(tl.float32)
        b_n = tl.load(bp + tn * s_bl).to(tl.float32)
        e = v_t - tl.sum(S * k_t[:, None], axis=0)
        tl.store(ep + t * DV, e, mask=vm)
        S += (b_t * k_t)[:, None] * e[None, :]
        o = tl.sum(S * q_t[:, None], axis=0) * scale
        tl.store(op + t * s_ol, o.to(O.dtype.element_ty), mask=vm)
    tl.store(SFIN + bh * DK * DV + st_off, S, mask=m2)


@jit
def _dr_bwd_kernel(
    Q, K, BETA, DO, DSFIN, ERR, CKPT, SFIN,
    DQ_P, DK_P, DV_, DBETA_P, DS0,
    L, H, DK, DV, NCK, BH, scale,
    s_qb, s_qh, s_ql, s_qk, s_kb, s_kh, s_kl, s_kk, s_bb, s_bh, s_bl,
    s_gb, s_gh, s_gl, s_gv, s_dvb, s_dvh, s_dvl, s_dvv,
    HAS_DSFIN: tl.constexpr, CK: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
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
    S = tl.load(SFIN + bh * DK * DV + st_off, mask=m2, other=0.0)
    if HAS_DSFIN:
        dS = tl.load(DSFIN + bh * DK * DV + st_off, mask=m2, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    qp = Q + b * s_qb + h * s_qh + kk * s_qk
    kp = K + b * s_kb + h * s_kh + kk * s_kk
    bp = BETA + b * s_bb + h * s_bh
    gp = DO + b * s_gb + h * s_gh + vv * s_gv
    ep = ERR + bh * L * DV + vv
    cp = CKPT + bh * NCK * DK * DV + st_off
    part = pid_v.to(tl.int64) * BH + bh
    dqp = DQ_P + part * L * DK + kk
    dkp = DK_P + part * L * DK + kk
    dbp = DBETA_P + part * L
    dvp = DV_ + b * s_dvb + h * s_dvh + vv * s_dvv
    t0 = L - 1
    k_n = tl.load(kp + t0 * s_kl, mask=km, other=0.0).to(tl.float32)
    q_n = tl.load(qp + t0 * s_ql, mask=km, other=0.0).to(tl.float32)
    b_n = tl.load(bp + t0 * s_bl).to(tl.float32)
    do_n = tl.load(gp + t0 * s_gl, mask=vm, other=0.0).to(tl.float32)
    e_n = tl.load(ep + t0 * DV, mask=vm, other=0.0)
    for i in range(L):
        t = L - 1 - i
        if (t + 1) % CK == 0:
            if t + 1 < L:  # restart from the forward's state: S_t = state entering step t + 1
                S = tl.load(cp + ((t + 1) // CK) * DK * DV, mask=m2, other=0.0)
        k_t = k_n
        q_t = q_n
        b_t = b_n
        do = do_n
        e = e_n
        tp = (t + L - 1) % L  # prefetch the reverse pass's next step (wraps at the end: unused)
        k_n = tl.load(kp + tp * s_kl, mask=km, other=0.0).to(tl.float32)
        q_n = tl.load(qp + tp * s_ql, mask=km, other=0.0).to(tl.float32)
        b_n = tl.load(bp + tp * s_bl).to(tl.float32)
        do_n = tl.load(gp + tp * s_gl, mask=vm, other=0.0).to(tl.float32)
        e_n = tl.load(ep + tp * DV, mask=vm, other=0.0)
        # o_t = scale S_t^T q_t
        dq = tl.sum(S * do[None, :], axis=1) * scale
        dS += (scale * q_t)[:, None] * do[None, :]
        # S_t = S_{t-1} + beta k e^T, e = v - S_{t-1}^T k
        S -= (b_t * k_t)[:, None] * e[None, :]
        dw = tl.sum(dS * k_t[:, None], axis=0)  # [BV]
        dk = b_t * tl.sum(dS * e[None, :], axis=1)
        db = tl.sum(dw * e, axis=0)
        de = b_t * dw
        dk -= tl.sum(S * de[None, :], axis=1)
        dS -= k_t[:, None] * de[None, :]
        tl.store(dvp + t * s_dvl, de.to(DV_.dtype.element_ty), mask=vm)
        tl.store(dqp + t * DK, dq, mask=km)
        tl.store(dkp + t * DK, dk, mask=km)
        tl.store(dbp + t, db)
    tl.store(DS0 + bh * DK * DV + st_off, dS, mask=m2)


def _s4(t):
    return tuple(t.stride())


def _dr_fwd(q, k, v, beta, scale, s0):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    cfg = state_block_config(DK, DV)
    ck = _ck(DK, DV)
    nck = triton.cdiv(L, ck)
    o = torch.empty_like(v)
    err = torch.empty((B * H, L, DV), device=q.device, dtype=torch.float32)
    ckpt = torch.empty((B * H, nck, DK, DV), device=q.device, dtype=torch.float32)
    sfin = torch.empty((B, H, DK, DV), device=q.device, dtype=torch.float32)
    grid = (B * H, triton.cdiv(DV, cfg["BV"]))
    _dr_fwd_kernel[grid](
        q, k, v, beta, s0, o, err, ckpt, sfin, L, H, DK, DV, nck, float(scale),
        *_s4(q), *_s4(k), *_s4(v), *beta.stride(), *_s4(o),
        HAS_S0=s0 is not None, CK=ck, **cfg,
    )
    return o, sfin, err, ckpt


def _dr_bwd(q, k, beta, scale, do, dsfin, err, ckpt, sfin, v_like):
    B, H, L, DK = q.shape
    DV = v_like.shape[-1]
    cfg = state_block_config(DK, DV)
    nv = triton.cdiv(DV, cfg["BV"])
    nck = ckpt.shape[1]
    dq_p = torch.empty((nv, B, H, L, DK), device=q.device, dtype=torch.float32)
    dk_p = torch.empty((nv, B, H, L, DK), device=q.device, dtype=torch.float32)
    db_p = torch.empty((nv, B, H, L), device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v_like)
    ds0 = torch.empty((B, H, DK, DV), device=q.device, dtype=torch.float32)
    _dr_bwd_kernel[(B * H, nv)](
        q, k, beta, do, dsfin, err, ckpt, sfin, dq_p, dk_p, dv, db_p, ds0,
        L, H, DK, DV, nck, B * H, float(scale),
        *_s4(q), *_s4(k), *beta.stride(), *_s4(do), *_s4(dv),
        HAS_DSFIN=dsfin is not None, CK=_ck(DK, DV), **cfg,
    )
    if nv == 1:
        return dq_p[0], dk_p[0], dv, db_p[0], ds0
    return dq_p.sum(0), dk_p.sum(0), dv, db_p.sum(0), ds0


def _check(q, k, v, beta):
    B, H, L, DK = q.shape
    if k.shape != q.shape or v.shape[:3] != (B, H, L) or beta.shape != (B, H, L):
        raise ValueError(f"expected q, k [B, H, L, K], v [B, H, L, V], beta [B, H, L]; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(beta.shape)}")


@torch.library.custom_op("mad_bench::delta_rule", mutates_args=())
def delta_rule_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, scale: float,
                  initial_state: Optional[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(o, S_L, e, checkpoints)``: the last two are what the backward reads (an op's
    backward sees only its inputs and outputs)."""
    _check(q, k, v, beta)
    s0 = initial_state.float().contiguous() if initial_state is not None else None
    return _dr_fwd(q, k, v, beta, scale, s0)


@delta_rule_op.register_fake
def _(q, k, v, beta, scale, initial_state):
    _check(q, k, v, beta)
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    f32 = dict(device=q.device, dtype=torch.float32)
    nck = triton.cdiv(L, _ck(DK, DV))
    return (torch.empty_like(v), q.new_empty((B, H, DK, DV), **f32), q.new_empty((B * H, L, DV), **f32),
            q.new_empty((B * H, nck, DK, DV), **f32))


@torch.library.custom_op("mad_bench::delta_rule_bwd", mutates_args=())
def delta_rule_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                      do: torch.Tensor, dsfin: Optional[torch.Tensor], err: torch.Tensor,
                      ckpt: torch.Tensor, sfin: torch.Tensor, scale: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dbeta, d initial_state)``, the last in fp32."""
    dsfin = dsfin.contiguous() if dsfin is not None else None
    v_like = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    dq, dk, dv, db, ds0 = _dr_bwd(q, k, beta, scale, do, dsfin, err, ckpt, sfin, v_like)
    return dq.to(q.dtype), dk.to(k.dtype), dv, db.to(beta.dtype), ds0


@delta_rule_bwd_op.register_fake
def _(q, k, v, beta, do, dsfin, err, ckpt, sfin, scale):
    # contiguous, as the real op's (a compiled graph lays out what follows by these strides)
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), beta.new_empty(beta.shape),
            sfin.new_empty(sfin.shape))


def _setup(ctx, inputs, output):
    q, k, v, beta, scale, initial_state = inputs
    _, sfin, err, ckpt = output
    ctx.mark_non_differentiable(err, ckpt)
    ctx.set_materialize_grads(False)  # no zero gradients for the saved buffers
    ctx.save_for_backward(q, k, v, beta, err, ckpt, sfin)
    ctx.scale = scale
    ctx.s0_dtype = initial_state.dtype if initial_state is not None else None


def _backward(ctx, do, dsfin, _derr, _dckpt):
    q, k, v, beta, err, ckpt, sfin = ctx.saved_tensors
    if do is None:  # only the final state was used
        do = torch.zeros_like(v)
    dq, dk, dv, db, ds0 = delta_rule_bwd_op(q, k, v, beta, do, dsfin, err, ckpt, sfin, ctx.scale)
    return dq, dk, dv, db, None, ds0.to(ctx.s0_dtype) if ctx.s0_dtype is not None else None


delta_rule_op.register_autograd(_backward, setup_context=_setup)
register_fold(delta_rule_op, fold_args=(0, 1, 2, 3, 5))


def delta_rule_triton(q, k, v, beta, scale: float, initial_state=None, output_final_state=False):
    """The Triton path of :func:`mad_bench.ops.delta_rule.chunk_delta_rule`."""
    o, sfin, _, _ = delta_rule_op(q, k, v, beta, float(scale), initial_state)
    return (o, sfin) if output_final_state else o
