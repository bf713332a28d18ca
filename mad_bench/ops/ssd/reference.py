"""Torch reference of Mamba-2's SSD scan (Dao & Gu, 2024): the chunked block decomposition."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssd_chunked"]


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan, torch reference.

    ``x[b, l, h, p]``, ``dt[b, l, h]`` (positive), ``A[h]`` (negative), ``B, C[b, l, g, n]``,
    ``initial_state[b, h, p, n]``. Returns ``(y[b, l, h, p], h_last[b, h, p, n])`` for
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t`` (no D term). Computed in
    fp32, or fp64 for fp64 inputs (the precise path the tests check against
    :func:`.naive.naive_ssd`); ``h_last`` in that compute dtype.

    Algorithm (the SSD block decomposition; the decay is a scalar per head and step, so the
    within-chunk decay matrix is ``[T, T]`` per head): with ``a_t = dt_t A`` and, per chunk of
    T steps, ``G_t = sum_{r <= t} a_r`` (cumulative log-decay),

    1. diagonal blocks: ``y_t = sum_{s <= t} (C_t . B_s) exp(G_t - G_s) dt_s x_s`` — masked
       ``exp(segsum)`` times the ``C B^T`` scores, batched matmuls over all chunks at once
       (the other triangle is ``-inf`` before ``exp``: nothing overflows);
    2. chunk states: ``S_local = sum_s exp(G_end - G_s) dt_s x_s B_s^T``;
    3. inter-chunk recurrence ``S_c = exp(G_end) S_{c-1} + S_local(c-1)`` (loop over chunks);
    4. off-diagonal blocks: ``y_t += exp(G_t) S_c C_t``.

    The sequence is zero-padded to a multiple of T (padded steps: dt = 0, i.e. decay 1 and no
    input, so the final state is exact).
    """
    dtype_in = x.dtype
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    work = torch.promote_types(dtype_in, torch.float32)  # fp32; fp64 stays fp64
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    if g != h:  # share each group's B, C across its heads
        B = B.repeat_interleave(h // g, dim=2)
        C = C.repeat_interleave(h // g, dim=2)
    # chunked, head-major layouts
    xs = (x * dt[..., None]).view(b, nc, T, h, p).permute(0, 3, 1, 2, 4)  # [b, h, c, T, p]
    Bc = B.view(b, nc, T, h, n).permute(0, 3, 1, 2, 4)  # [b, h, c, T, n]
    Cc = C.view(b, nc, T, h, n).permute(0, 3, 1, 2, 4)
    a = (dt * A).view(b, nc, T, h).permute(0, 3, 1, 2)  # [b, h, c, T]
    G = a.cumsum(dim=-1)

    # 1. diagonal blocks
    mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    seg = (G[..., :, None] - G[..., None, :]).masked_fill(~mask, float("-inf"))
    scores = (Cc @ Bc.transpose(-1, -2)) * seg.exp()  # [b, h, c, T, T]
    y = scores @ xs  # [b, h, c, T, p]

    # 2. chunk-local end states  [b, h, c, p, n]
    decay_to_end = (G[..., -1:] - G).exp()  # [b, h, c, T]
    S_local = (xs * decay_to_end[..., None]).transpose(-1, -2) @ Bc

    # 3. inter-chunk recurrence
    decay_chunk = G[..., -1].exp().unbind(2)  # c x [b, h]
    S_local = S_local.unbind(2)
    S = (
        torch.zeros(b, h, p, n, device=x.device, dtype=work)
        if initial_state is None
        else initial_state.to(work)
    )
    S_in = []
    for c in range(nc):
        S_in.append(S)
        S = decay_chunk[c][..., None, None] * S + S_local[c]
    S_enter = torch.stack(S_in, dim=2)  # [b, h, c, p, n]

    # 4. off-diagonal blocks
    y = y + (Cc @ S_enter.transpose(-1, -2)) * G.exp()[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(b, nc * T, h, p)[:, :l]
    return y.to(dtype_in), S
