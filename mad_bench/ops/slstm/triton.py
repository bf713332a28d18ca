"""sLSTM's recurrent cell (xLSTM) in Triton: the whole time loop, forward and backward.

Inputs: the precomputed input projections ``wx [B, L, H, 4 d_h]`` (``W x_t + b``, per head the
gate blocks ``[i | f | z | o]`` of d_h units each, as ``SLSTM._wx`` makes them; any strides) and
the block-diagonal recurrent weights ``R [H, d_h, 4 d_h]``. Per head, from ``h = c = n = 0``,
``m = -inf``::

    [i~, f~, z~, o~] = wx_t + h_{t-1} R
    log f = logsigmoid(f~);  m_t = max(log f + m_{t-1}, i~)
    i' = exp(i~ - m_t);      f' = exp(log f + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~);  n_t = f' n_{t-1} + i';  h_t = sigmoid(o~) c_t / n_t

Returns ``h [B, L, H, d_h]`` (fp32 math; output in wx's dtype). The stabiliser ``m`` carries no
gradient (detached, as in :func:`mad_bench.ops.slstm.reference.slstm_cell`).

Design: one program per (batch, head) with ``h, c, n, m`` and the four ``[d_h, d_h]`` blocks of R
in registers; the per-step recurrent matvec is a broadcast-multiply + reduction (d_h ~ 32 at MAD
sizes: a 1-row ``tl.dot`` would waste the tensor core). The forward stores ``h_t`` (fp32, the
output) and ``c_t, n_t, m_t`` per step (``[B*H, L, 3, d_h]`` fp32). The backward runs the reverse
time loop, recomputes the pre-activations from ``wx_t`` and the stored ``h_{t-1}`` (bit-identical
to the forward's), writes ``d wx_t`` and accumulates ``dR`` per program (``[B, H, d_h, 4 d_h]``
fp32 partials, summed over B by torch).

Per-member recurrent weights: ``R [G, H, d_h, 4 d_h]`` gives batch row ``b`` member
``b // (B / G)``'s weights and ``dR`` comes back per member (each summed over its own rows), so
the ensemble engine's vmap rule folds G members into the batch and launches once per direction.
"""
from __future__ import annotations

import torch

from ..vmap_rules import member_count, member_sum, register_fold
from ..dispatch import jit, next_pow2, pick, tl

__all__ = ["slstm_scan_triton", "slstm_scan_op"]


@jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@jit
def _slstm_fwd_kernel(
    WX, R, HOUT, ST,
    L, H, DH, RPM,
    s_wb, s_wl, s_wh, s_wg, s_rm, s_rh, s_rk, s_rj, s_ob, s_ol, s_oh,
    BD: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = (pid % H).to(tl.int64)
    kk = tl.arange(0, BD)  # input unit of the recurrent matvec (rows of R)
    jj = tl.arange(0, BD)  # output unit
    km = kk < DH
    jm = jj < DH
    m2 = km[:, None] & jm[None, :]
    rp = R + (b // RPM) * s_rm + h * s_rh + kk[:, None] * s_rk + jj[None, :] * s_rj  # s_rm 0: shared
    R_i = tl.load(rp, mask=m2, other=0.0).to(tl.float32)
    R_f = tl.load(rp + DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    R_z = tl.load(rp + 2 * DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    R_o = tl.load(rp + 3 * DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    wp = WX + b * s_wb + h * s_wh + jj * s_wg
    op = HOUT + b * s_ob + h * s_oh + jj
    sp = ST + pid.to(tl.int64) * L * 3 * DH + jj
    hk = tl.zeros([BD], dtype=tl.float32)  # h_{t-1} indexed by input unit
    c = tl.zeros([BD], dtype=tl.float32)
    n = tl.zeros([BD], dtype=tl.float32)
    m = tl.full([BD], float("-inf"), dtype=tl.float32)
    wi_n = tl.load(wp, mask=jm, other=0.0).to(tl.float32)
    wf_n = tl.load(wp + DH * s_wg, mask=jm, other=0.0).to(tl.float32)
    wz_n = tl.load(wp + 2 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
    wo_n = tl.load(wp + 3 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
    for t in range(L):
        wi = wi_n
        wf = wf_n
        wz = wz_n
        wo = wo_n
        tn = (t + 1) % L  # prefetch the next step's projections (wraps at the end: unused)
        wi_n = tl.load(wp + tn * s_wl, mask=jm, other=0.0).to(tl.float32)
        wf_n = tl.load(wp + tn * s_wl + DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        wz_n = tl.load(wp + tn * s_wl + 2 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        wo_n = tl.load(wp + tn * s_wl + 3 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        hb = hk[:, None]
        ri = wi + tl.sum(hb * R_i, axis=0)
        rf = wf + tl.sum(hb * R_f, axis=0)
        rz = wz + tl.sum(hb * R_z, axis=0)
        ro = wo + tl.sum(hb * R_o, axis=0)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        m_new = tl.maximum(logf + m, ri)
        ig = tl.exp(ri - m_new)
        fg = tl.exp(logf + m - m_new)
        tz = 1.0 - 2.0 / (tl.exp(2.0 * rz) + 1.0)
        c = fg * c + ig * tz
        n = fg * n + ig
        m = m_new
        hj = _sigmoid(ro) * c / n
        tl.store(op + t * s_ol, hj, mask=jm)
        tl.store(sp + t * 3 * DH, c, mask=jm)
        tl.store(sp + t * 3 * DH + DH, n, mask=jm)
        tl.store(sp + t * 3 * DH + 2 * DH, m, mask=jm)
        hk = tl.where(jm, hj, 0.0)  # becomes the next step's input (rows of R)


@jit
def _slstm_bwd_kernel(
    WX, R, HOUT, ST, DH_, DWX, DR_P,
    L, H, DH, RPM,
    s_wb, s_wl, s_wh, s_wg, s_rm, s_rh, s_rk, s_rj, s_ob, s_ol, s_oh, s_gb, s_gl, s_gh,
    s_db, s_dl, s_dh, s_dg,
    BD: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = (pid % H).to(tl.int64)
    kk = tl.arange(0, BD)
    jj = tl.arange(0, BD)
    km = kk < DH
    jm = jj < DH
    m2 = km[:, None] & jm[None, :]
    rp = R + (b // RPM) * s_rm + h * s_rh + kk[:, None] * s_rk + jj[None, :] * s_rj  # s_rm 0: shared
    R_i = tl.load(rp, mask=m2, other=0.0).to(tl.float32)
    R_f = tl.load(rp + DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    R_z = tl.load(rp + 2 * DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    R_o = tl.load(rp + 3 * DH * s_rj, mask=m2, other=0.0).to(tl.float32)
    dR_i = tl.zeros([BD, BD], dtype=tl.float32)
    dR_f = tl.zeros([BD, BD], dtype=tl.float32)
    dR_z = tl.zeros([BD, BD], dtype=tl.float32)
    dR_o = tl.zeros([BD, BD], dtype=tl.float32)
    wp = WX + b * s_wb + h * s_wh + jj * s_wg
    hp = HOUT + b * s_ob + h * s_oh
    gp = DH_ + b * s_gb + h * s_gh + jj
    dwp = DWX + b * s_db + h * s_dh + jj * s_dg
    sp = ST + pid.to(tl.int64) * L * 3 * DH + jj
    dh_rec = tl.zeros([BD], dtype=tl.float32)  # d h_t from step t + 1 (indexed by input unit)
    dc = tl.zeros([BD], dtype=tl.float32)
    dn = tl.zeros([BD], dtype=tl.float32)
    for i in range(L):
        t = L - 1 - i
        tp = tl.maximum(t - 1, 0)
        first = t == 0
        wi = tl.load(wp + t * s_wl, mask=jm, other=0.0).to(tl.float32)
        wf = tl.load(wp + t * s_wl + DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        wz = tl.load(wp + t * s_wl + 2 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        wo = tl.load(wp + t * s_wl + 3 * DH * s_wg, mask=jm, other=0.0).to(tl.float32)
        # the state entering step t (step 0: zeros, m = -inf; the loads of step 0's are unused)
        hk = tl.where(first, 0.0, tl.load(hp + tp * s_ol + kk, mask=km, other=0.0))  # h_{t-1}
        cp = tl.where(first, 0.0, tl.load(sp + tp * 3 * DH, mask=jm, other=0.0))
        np_ = tl.where(first, 0.0, tl.load(sp + tp * 3 * DH + DH, mask=jm, other=0.0))
        mp = tl.where(first, float("-inf"), tl.load(sp + tp * 3 * DH + 2 * DH, mask=jm, other=0.0))
        dh = tl.load(gp + t * s_gl, mask=jm, other=0.0).to(tl.float32) + dh_rec
        hb = hk[:, None]
        ri = wi + tl.sum(hb * R_i, axis=0)
        rf = wf + tl.sum(hb * R_f, axis=0)
        rz = wz + tl.sum(hb * R_z, axis=0)
        ro = wo + tl.sum(hb * R_o, axis=0)
        logf = tl.minimum(rf, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(rf)))
        m_new = tl.maximum(logf + mp, ri)
        ig = tl.exp(ri - m_new)
        fg = tl.exp(logf + mp - m_new)
        tz = 1.0 - 2.0 / (tl.exp(2.0 * rz) + 1.0)
        c = fg * cp + ig * tz
        n = fg * np_ + ig
        og = _sigmoid(ro)
        # h = og c / n
        d_ro = dh * c / n * og * (1.0 - og)
        dc += dh * og / n
        dn -= dh * og * c / (n * n)
        # c = f' c_prev + i' tz ; n = f' n_prev + i'
        dfg = dc * cp + dn * np_
        dig = dc * tz + dn
        d_rz = dc * ig * (1.0 - tz * tz)
        d_ri = dig * ig
        d_rf = dfg * fg * _sigmoid(-rf)  # d logsigmoid(x) / dx = sigmoid(-x)
        dc = dc * fg
        dn = dn * fg
        d_ri = tl.where(jm, d_ri, 0.0)
        d_rf = tl.where(jm, d_rf, 0.0)
        d_rz = tl.where(jm, d_rz, 0.0)
        d_ro = tl.where(jm, d_ro, 0.0)
        dwo = dwp + t * s_dl
        tl.store(dwo, d_ri.to(DWX.dtype.element_ty), mask=jm)
        tl.store(dwo + DH * s_dg, d_rf.to(DWX.dtype.element_ty), mask=jm)
        tl.store(dwo + 2 * DH * s_dg, d_rz.to(DWX.dtype.element_ty), mask=jm)
        tl.store(dwo + 3 * DH * s_dg, d_ro.to(DWX.dtype.element_ty), mask=jm)
        dR_i += hb * d_ri[None, :]
        dR_f += hb * d_rf[None, :]
        dR_z += hb * d_rz[None, :]
        dR_o += hb * d_ro[None, :]
        dh_rec = (tl.sum(R_i * d_ri[None, :], axis=1) + tl.sum(R_f * d_rf[None, :], axis=1)
                  + tl.sum(R_z * d_rz[None, :], axis=1) + tl.sum(R_o * d_ro[None, :], axis=1))
    dp = DR_P + pid.to(tl.int64) * DH * 4 * DH + kk[:, None] * 4 * DH + jj[None, :]
    tl.store(dp, dR_i, mask=m2)
    tl.store(dp + DH, dR_f, mask=m2)
    tl.store(dp + 2 * DH, dR_z, mask=m2)
    tl.store(dp + 3 * DH, dR_o, mask=m2)


def _cfg(dh: int) -> dict:
    BD = next_pow2(dh)
    return pick(dict(BD=BD, num_warps=max(1, min(8, BD * BD // 256))))


def _sr(R):
    """R's (member, head, row, column) strides; member stride 0 for a shared ``[H, d_h, 4 d_h]``."""
    return tuple(R.stride()) if R.dim() == 4 else (0, *R.stride())


def _check(wx, R):
    B, L, H, G = wx.shape
    DH = G // 4
    member_count(B, ("R", R, 3))
    if G != 4 * DH or R.shape[-3:] != (H, DH, G):
        raise ValueError(f"expected wx [B, L, H, 4 d_h] and R [H, d_h, 4 d_h] or [members, H, d_h, 4 d_h]; "
                         f"got {tuple(wx.shape)}, {tuple(R.shape)}")


def slstm_fwd(wx, R):
    """``(h, states)``: ``h [B, L, H, d_h]`` fp32 and ``c, n, m`` per step, ``[B * H, L, 3, d_h]`` fp32."""
    B, L, H, G = wx.shape
    DH = G // 4
    members = member_count(B, ("R", R, 3))
    hout = torch.empty((B, L, H, DH), device=wx.device, dtype=torch.float32)
    st = torch.empty((B * H, L, 3, DH), device=wx.device, dtype=torch.float32)
    _slstm_fwd_kernel[(B * H,)](
        wx, R, hout, st, L, H, DH, B // members, *wx.stride(), *_sr(R),
        hout.stride(0), hout.stride(1), hout.stride(2), **_cfg(DH),
    )
    return hout, st


def slstm_bwd(wx, R, hout, st, dh):
    """``(dwx, dR)`` in wx's and R's dtypes."""
    B, L, H, G = wx.shape
    DH = G // 4
    members = member_count(B, ("R", R, 3))
    if dh.stride(-1) != 1:  # the kernel steps over d_h by 1 (a tangent may come expanded: stride 0)
        dh = dh.contiguous()
    dwx = torch.empty_like(wx)
    dr_p = torch.empty((B, H, DH, G), device=wx.device, dtype=torch.float32)
    _slstm_bwd_kernel[(B * H,)](
        wx, R, hout, st, dh, dwx, dr_p, L, H, DH, B // members, *wx.stride(), *_sr(R),
        hout.stride(0), hout.stride(1), hout.stride(2),
        dh.stride(0), dh.stride(1), dh.stride(2), *dwx.stride(), **_cfg(DH),
    )
    return dwx, member_sum(dr_p, R.dim() == 4, members).to(R.dtype)


@torch.library.custom_op("mad_bench::slstm_scan", mutates_args=())
def slstm_scan_op(wx: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R [H, d_h, 4 d_h]`` shared by the batch or per member ``[members, H, d_h, 4 d_h]``;
    returns ``(h, states)`` (the backward reads the states)."""
    _check(wx, R)
    return slstm_fwd(wx, R)


@slstm_scan_op.register_fake
def _(wx, R):
    _check(wx, R)
    B, L, H, G = wx.shape
    return wx.new_empty((B, L, H, G // 4), dtype=torch.float32), wx.new_empty((B * H, L, 3, G // 4),
                                                                             dtype=torch.float32)


@torch.library.custom_op("mad_bench::slstm_scan_bwd", mutates_args=())
def slstm_scan_bwd_op(wx: torch.Tensor, R: torch.Tensor, hout: torch.Tensor, st: torch.Tensor,
                      dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return slstm_bwd(wx, R, hout, st, dh)


@slstm_scan_bwd_op.register_fake
def _(wx, R, hout, st, dh):
    return torch.empty_like(wx), R.new_empty(R.shape)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs, *output)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, dh, _):
    return slstm_scan_bwd_op(*ctx.saved_tensors, dh)


slstm_scan_op.register_autograd(_backward, setup_context=_setup)
register_fold(slstm_scan_op, fold_args=(0,), member_args=(1,))


def slstm_scan_triton(wx: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """The Triton path of :func:`mad_bench.ops.slstm.slstm_scan`.

    Under the engine's vmap ``wx`` folds into the batch and a per-member ``R`` is passed with a
    leading member dim: one launch for all members."""
    return slstm_scan_op(wx, R)[0].to(wx.dtype)
