"""Torch reference of xLSTM's mLSTM (chunked, stabilised); the recurrence is in
:mod:`mad_bench.ops.mlstm`'s Triton module docstring and the mlstm layer's."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mlstm_chunked"]


def mlstm_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i_gate: torch.Tensor,
    log_f: torch.Tensor,
    chunk_size: int = 64,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    compute_dtype: torch.dtype = torch.float32,
):
    """Chunked stabilised mLSTM, torch reference.

    ``q, k[b, h, l, dk]``, ``v[b, h, l, dv]``, ``i_gate`` (pre-activation i~) and ``log_f``
    ``[b, h, l]``; ``state = (C[b, h, dk, dv], n[b, h, dk], m[b, h])`` (default zeros).
    Returns ``(h[b, h, l, dv], (C, n, m))``, equal to the recurrence in the module docstring.

    Per chunk of T steps, with ``g_t = sum_{r <= t in chunk} log f_r``:

    1. intra-chunk log-weights ``D[t, s] = g_t - g_s + i~_s`` (s <= t, else -inf) and their row
       maxima ``m_intra``; ``S = (q k^T) exp(D - m_intra)`` for all chunks at once;
    2. chunk-local state ``C_loc = sum_s exp(w_s - m_loc) k_s v_s^T`` with ``w_s = g_T - g_s +
       i~_s``, ``m_loc = max_s w_s`` (and ``n_loc`` alike);
    3. a loop over chunks carries ``(C, n, m)``: ``m' = max(g_T + m, m_loc)``,
       ``C' = exp(g_T + m - m') C + exp(m_loc - m') C_loc``;
    4. row stabiliser ``m_t = max(g_t + m_prev, m_intra_t)``; numerator and denominator add the
       intra part (scaled ``exp(m_intra - m_t)``) and the carried part ``q_t C_prev``,
       ``q_t . n_prev`` (scaled ``exp(g_t + m_prev - m_t)``); ``h = num / max(|den|, exp(-m_t))``.

    Every exponent is <= 0, so nothing overflows. Padded steps (to a multiple of T) have
    ``log f = 0`` and ``i~ = -inf`` (no decay, no input), so the final state is exact.
    Computed in ``compute_dtype`` (fp32; fp64 gives a precise reference for kernel tests).
    """
    b, h, l, dk = q.shape
    dv = v.shape[-1]
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    q, k, v, i_gate, log_f = (t.to(compute_dtype) for t in (q, k, v, i_gate, log_f))
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i_gate = F.pad(i_gate, (0, pad), value=float("-inf"))
        log_f = F.pad(log_f, (0, pad))
    q = q.view(b, h, nc, T, dk)
    k = k.view(b, h, nc, T, dk)
    v = v.view(b, h, nc, T, dv)
    ig = i_gate.view(b, h, nc, T)
    g = log_f.view(b, h, nc, T).cumsum(-1)

    # 1. intra-chunk stabilised attention
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    D = (g[..., :, None] - g[..., None, :] + ig[..., None, :]).masked_fill(~mask, float("-inf"))
    m_intra = D.amax(-1).detach()  # [b, h, c, T]
    S = (q @ k.transpose(-1, -2)) * (D - m_intra[..., None]).exp()
    num = S @ v  # [b, h, c, T, dv]
    den = S.sum(-1)  # [b, h, c, T]

    # 2. chunk-local end states
    w = D[..., -1, :]  # [b, h, c, T]: g_T - g_s + i~_s
    m_loc = m_intra[..., -1]  # [b, h, c]
    wk = k * (w - m_loc[..., None]).exp()[..., None]
    C_loc = wk.transpose(-1, -2) @ v  # [b, h, c, dk, dv]
    n_loc = wk.sum(-2)  # [b, h, c, dk]

    # 3. inter-chunk recurrence
    if state is None:
        C = q.new_zeros(b, h, dk, dv)
        n = q.new_zeros(b, h, dk)
        m = q.new_zeros(b, h)
    else:
        C, n, m = (t.to(compute_dtype) for t in state)
        m = m.detach()
    g_end = g[..., -1]  # [b, h, c]; the carried state's decay has a gradient, m does not
    C_loc, n_loc = C_loc.unbind(2), n_loc.unbind(2)
    m_loc_c, g_end_c = m_loc.unbind(2), g_end.unbind(2)
    Cs, ns, ms = [], [], []
    for c in range(nc):
        Cs.append(C)
        ns.append(n)
        ms.append(m)
        m_new = torch.maximum(g_end_c[c].detach() + m, m_loc_c[c])
        a_old = (g_end_c[c] + m - m_new).exp()
        a_new = (m_loc_c[c] - m_new).exp()
        C = a_old[..., None, None] * C + a_new[..., None, None] * C_loc[c]
        n = a_old[..., None] * n + a_new[..., None] * n_loc[c]
        m = m_new
    C_prev = torch.stack(Cs, 2)  # [b, h, c, dk, dv]
    n_prev = torch.stack(ns, 2)  # [b, h, c, dk]
    m_prev = torch.stack(ms, 2)  # [b, h, c]

    # 4. combine
    g_carry = g + m_prev[..., None]  # log-scale of the carried state at t (unstabilised)
    m_t = torch.maximum(g_carry, m_intra).detach()
    s_intra = (m_intra - m_t).exp()
    s_carry = (g_carry - m_t).exp()
    num = s_intra[..., None] * num + s_carry[..., None] * (q @ C_prev)
    den = s_intra * den + s_carry * (q @ n_prev[..., None])[..., 0]
    out = num / torch.maximum(den.abs(), (-m_t).exp())[..., None]
    out = out.reshape(b, h, nc * T, dv)[:, :, :l]
    return out, (C, n, m)
