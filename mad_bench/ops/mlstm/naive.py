"""xLSTM's mLSTM step by step (the stabilised recurrence of the xLSTM paper, eqs. 19-27): the
oracle for the chunked reference and the Triton kernel. Computes in the inputs' dtype (at least
fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_mlstm"]


def naive_mlstm(q, k, v, i_gate, log_f, initial_state=None, output_final_state=False):
    """Per step, with ``m_0 = 0`` (zero state) or the given ``m``::

        m_t = max(log_f_t + m_{t-1}, i_t)
        C_t = exp(log_f_t + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_t^T   (n_t alike, k_t)
        h_t = C_t^T q_t / max(|n_t . q_t|, exp(-m_t))

    Arguments and returns as :func:`mad_bench.ops.mlstm.mlstm` (no chunking); ``m`` carries no
    gradient (``h`` does not depend on it). ``h`` and the state in the compute dtype."""
    B, H, L, K = q.shape
    V = v.shape[-1]
    dt = torch.promote_types(q.dtype, torch.float32)
    q, k, v, i_gate, log_f = (t.to(dt) for t in (q, k, v, i_gate, log_f))
    if initial_state is None:
        C, n, m = q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H)
    else:
        C, n, m = (t.to(dt) for t in initial_state)
    m = m.detach()
    hs = []
    for t in range(L):
        m_new = torch.maximum(log_f[:, :, t] + m, i_gate[:, :, t]).detach()
        f_ = torch.exp(log_f[:, :, t] + m - m_new)
        i_ = torch.exp(i_gate[:, :, t] - m_new)
        k_t = k[:, :, t]
        C = f_[..., None, None] * C + i_[..., None, None] * k_t[..., :, None] * v[:, :, t, None, :]
        n = f_[..., None] * n + i_[..., None] * k_t
        num = torch.einsum("bhk,bhkv->bhv", q[:, :, t], C)
        den = torch.maximum((q[:, :, t] * n).sum(-1).abs(), torch.exp(-m_new))
        hs.append(num / den[..., None])
        m = m_new
    h = torch.stack(hs, dim=2)
    return (h, (C, n, m)) if output_final_state else h
