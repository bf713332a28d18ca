"""Torch reference of xLSTM's sLSTM: the cell and its time loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["slstm_cell", "slstm_scan_ref"]


def slstm_cell(wx: torch.Tensor, R: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """One sLSTM step. ``wx[H, B, 4 d_h]`` (W x_t + b), ``R[H, d_h, 4 d_h]``,
    ``state = (h, c, n, m)`` each ``[H, B, d_h]``. Returns the new state (new tensors)."""
    h, c, n, m = state
    pre = torch.baddbmm(wx, h, R)
    i_raw, f_raw, z_raw, o_raw = pre.chunk(4, dim=-1)
    log_f = F.logsigmoid(f_raw)
    m_new = torch.maximum(log_f + m, i_raw).detach()
    i_ = torch.exp(i_raw - m_new)
    f_ = torch.exp(log_f + m - m_new)
    c = f_ * c + i_ * torch.tanh(z_raw)
    n = f_ * n + i_
    h = torch.sigmoid(o_raw) * c / n
    return h, c, n, m_new


def slstm_scan_ref(wx: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """The time loop over :func:`slstm_cell` from the zero state (fp32; fp64 stays fp64)."""

    B, L, H, G = wx.shape
    dh = G // 4
    work = torch.promote_types(wx.dtype, torch.float32)
    w = wx.to(work).permute(1, 2, 0, 3).contiguous()  # [L, H, B, 4 d_h]
    R = R.to(work)
    z = torch.zeros(H, B, dh, dtype=work, device=wx.device)
    state = (z, z, z, torch.full_like(z, float("-inf")))
    hs = []
    for w_t in w.unbind(0):
        state = slstm_cell(w_t, R, state)
        hs.append(state[0])
    return torch.stack(hs, 0).permute(2, 0, 1, 3).to(wx.dtype)  # [B, L, H, d_h]
