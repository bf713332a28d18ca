"""xLSTM's sLSTM time loop in its unstabilised form: the oracle for the stabilised torch loop
and the Triton kernel (the stabiliser ``m`` cancels in ``h = o c / n``, so the plain form is the
same function wherever ``exp`` does not overflow, e.g. fp64 at moderate gates). Computes in the
inputs' dtype (at least fp32: fp64 stays fp64)."""
from __future__ import annotations

import torch

__all__ = ["naive_slstm_scan"]


def naive_slstm_scan(wx: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Per head, from zero ``h, c, n``: ``pre = wx_t + h_{t-1} R`` split into ``i, f, z, o``;
    ``c_t = sigmoid(f) c_{t-1} + exp(i) tanh(z)``, ``n_t = sigmoid(f) n_{t-1} + exp(i)``,
    ``h_t = sigmoid(o) c_t / n_t``. Arguments and returns as
    :func:`mad_bench.ops.slstm.slstm_scan`: ``wx [B, L, H, 4 d_h]``, ``R [H, d_h, 4 d_h]`` ->
    ``h [B, L, H, d_h]`` in wx's dtype."""
    B, L, H, G = wx.shape
    dh = G // 4
    dt = torch.promote_types(wx.dtype, torch.float32)
    w, R = wx.to(dt), R.to(dt)
    h = torch.zeros(B, H, dh, dtype=dt, device=wx.device)
    c, n = torch.zeros_like(h), torch.zeros_like(h)
    hs = []
    for t in range(L):
        pre = w[:, t] + torch.einsum("bhd,hdg->bhg", h, R)
        i, f, z, o = pre.split(dh, dim=-1)
        c = torch.sigmoid(f) * c + torch.exp(i) * torch.tanh(z)
        n = torch.sigmoid(f) * n + torch.exp(i)
        h = torch.sigmoid(o) * c / n
        hs.append(h)
    return torch.stack(hs, dim=1).to(wx.dtype)
