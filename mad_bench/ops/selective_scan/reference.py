"""Torch reference of Mamba-1's selective scan (Gu & Dao, 2023): the one chunked two-level scan
(:func:`chunked_scan`, time-major core; :func:`selective_scan`, mamba's ``selective_scan_fn``
argument convention around it) and :func:`selective_scan_naive`, the step-by-step definition
(from :mod:`.naive`: the tests' ground truth).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import naive_selective_scan

__all__ = ["selective_scan", "chunked_scan", "selective_scan_naive"]


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 32,
):
    """Selective scan, torch reference (argument convention of mamba's ``selective_scan_fn``).

    Shapes: ``u, delta[b, d, l]``, ``A[d, n]`` (negative reals), ``B, C[b, n, l]`` (or
    ``[b, g, n, l]`` with g dividing d), ``D[d]``, ``z[b, d, l]``, ``delta_bias[d]``,
    ``initial_state[b, d, n]``. Computes, with ``delta <- softplus(delta + delta_bias)``::

        h_t = exp(delta_t A) * h_{t-1} + delta_t u_t B_t        h: [b, d, n]
        y_t = sum_n C_t[n] h_t[:, :, n] + D u_t ;   y <- y * silu(z)

    and returns ``y[b, d, l]`` in ``u``'s dtype (and the last ``h``, fp32, when
    ``return_last_state``). Arithmetic in fp32 (fp64 inputs: fp64, the tests' precise
    reference). See :func:`chunked_scan` for the algorithm.
    """
    d = u.shape[1]
    if B.dim() == 4:  # grouped: [b, g, n, l] -> [b, d, n, l]
        B = B.repeat_interleave(d // B.shape[1], dim=1)
    if C.dim() == 4:
        C = C.repeat_interleave(d // C.shape[1], dim=1)
    # [b, d, n, l] (per channel) -> [b, l, d, n];  [b, n, l] (shared) -> [b, l, 1, n]
    Bt = B.permute(0, 3, 1, 2) if B.dim() == 4 else B.transpose(1, 2)[:, :, None]
    Ct = C.permute(0, 3, 1, 2) if C.dim() == 4 else C.transpose(1, 2)[:, :, None]
    work = torch.promote_types(u.dtype, torch.float32)
    delta = delta.to(work)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last = chunked_scan(
        u.transpose(1, 2), delta.transpose(1, 2), A, Bt, Ct, initial_state, chunk_size
    )
    y = y.transpose(1, 2)
    if D is not None:
        y = y + D.to(work)[:, None] * u.to(work)
    if z is not None:
        y = y * F.silu(z.to(work))
    y = y.to(u.dtype)
    return (y, last) if return_last_state else y


def chunked_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan core in time-major layout: ``u, delta[b, l, d]`` (delta already positive),
    ``A[d, n]``, ``B, C[b, l, 1 | d, n]``; returns ``(y[b, l, d], h_last[b, d, n])`` (no D term).

    Algorithm: a two-level recurrence, exact (no division by decays, every factor is a decay
    in (0, 1]) and so stable for any ``delta >= 0``. With ``a_t = exp(delta_t A)`` and
    ``x_t = delta_t u_t B_t`` (both ``[b, d, n]`` per step), the sequence is cut into chunks
    of T = ``chunk_size`` steps (zero-padded at the end: a padded step has ``delta = 0``, i.e.
    decay 1 and no input, so the final state is exact).

    1. Intra-chunk, from a zero state, for all chunks at once: ``h_t = a_t h_{t-1} + x_t``,
       a loop of T steps over ``[b, chunks, d, n]`` tensors.
    2. Inter-chunk: the state entering chunk c is ``S_c = exp(G_end) S_{c-1} + h_end(c-1)``,
       with ``G_t = sum_{r <= t in chunk} delta_r A`` the cumulative log-decay; a loop of
       l / T steps over ``[b, d, n]`` tensors.
    3. ``h_t += exp(G_t) S_c`` for every t of chunk c; ``y_t = sum_n C_t h_t``.

    Python steps: T + l / T (about 2 sqrt(l) at the best T) instead of l; memory O(b l d n).
    On CPU this beat the masked ``exp(segsum)`` form (which materialises ``[T, T]`` per
    channel and state: T times the memory) by 3-5x at d_state 4.
    """
    b, l, d = u.shape
    n = A.shape[1]
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    work = torch.promote_types(u.dtype, torch.float32)  # fp32 (fp64 stays fp64)
    u, delta = u.to(work), delta.to(work)
    B, C, A = B.to(work), C.to(work), A.to(work)
    if pad:
        u, delta = F.pad(u, (0, 0, 0, pad)), F.pad(delta, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    dA = (delta[..., None] * A).view(b, nc, T, d, n)  # log-decay per step
    x = ((delta * u)[..., None] * B).view(b, nc, T, d, n)  # input per step
    a = dA.exp()

    # 1. intra-chunk recurrence from zero, all chunks at once
    # (unbind, not indexing: the backward of t indexing ops would each fill a full-size zero
    # tensor)
    a_t, x_t = a.unbind(2), x.unbind(2)
    hs = [x_t[0]]
    for t in range(1, T):
        hs.append(a_t[t] * hs[-1] + x_t[t])
    h = torch.stack(hs, dim=2)  # [b, c, T, d, n]

    # 2. inter-chunk state passing
    G = dA.cumsum(dim=2)
    decay_chunk = G[:, :, -1].exp().unbind(1)  # c x [b, d, n]
    h_end = hs[-1].unbind(1)
    S = (
        torch.zeros(b, d, n, device=u.device, dtype=work)
        if initial_state is None
        else initial_state.to(work)
    )
    S_in = []
    for c in range(nc):
        S_in.append(S)
        S = decay_chunk[c] * S + h_end[c]

    # 3. add the carried state, read out
    h = h + G.exp() * torch.stack(S_in, dim=1)[:, :, None]
    y = (h.view(b, nc * T, d, n) * C).sum(-1)[:, :l]
    return y, S


def selective_scan_naive(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The plain loop (:func:`.naive.naive_selective_scan`)."""
    return naive_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
