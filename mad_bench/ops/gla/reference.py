"""Torch reference of the chunked linear-attention family: retention / simple GLA and per-key GLA.

Layout as flash-linear-attention: ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, states
``S [B, H, K, V]`` (key-major: ``o_t = S_t^T q_t``). The functions compute in float32 (float64
stays float64) and return the input dtype. The ``chunk_*`` functions are linear in ``L``
(intra-chunk masked matmuls + a short Python loop over ``L / chunk_size`` chunks that carries the
state); the ``recurrent_*`` functions are plain loops over time (from :mod:`.naive`), the
definition of each recurrence and the independent ground truth of the tests.

Recurrences (per batch and head; ``g_t = exp(log_g_t)``):

- gated linear attention (GLA, Yang et al. 2023), per-key gate ``log_g [B, H, L, K]``::

      S_t = diag(g_t) S_{t-1} + k_t v_t^T,        o_t = S_t^T (scale * q_t)

- simple gated / retention (RetNet, Sun et al. 2023), one gate per head and step
  ``log_g [B, H, L]`` (``None``: no decay, plain linear attention, Katharopoulos et al. 2020)::

      S_t = g_t S_{t-1} + k_t v_t^T,              o_t = S_t^T (scale * q_t)

All sequences are zero-padded to a multiple of the chunk size (padding has gate 1 and zero keys,
so it changes neither the outputs kept nor the final state).
"""
from __future__ import annotations

import torch

from ..utils import carry_states, pad_time, upcast

from .naive import naive_gla, naive_simple_gla

__all__ = ["chunk_gla", "chunk_simple_gla", "recurrent_gla", "recurrent_simple_gla"]


def chunk_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_g: torch.Tensor,
    scale: float = 1.0,
    chunk_size: int = 64,
    sub_chunk_size: int = 16,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
):
    """Chunked gated linear attention with per-key gates (GLA, fla's ``chunk_gla``).

    Args:
        q, k: ``[B, H, L, K]``; v: ``[B, H, L, V]``.
        log_g: ``[B, H, L, K]``, log of the forget gate (``<= 0``), applied before step t's write.
        scale: multiplies ``q``.
        chunk_size: the state is materialised every ``chunk_size`` steps.
        sub_chunk_size: divides ``chunk_size``; within a chunk, blocks of different sub-chunks
            are masked matmuls of gate-rescaled q / k whose exponents are all ``<= 0``, and the
            diagonal blocks are computed pairwise (``exp(b_i - b_j)`` per key), so no exponent
            ever overflows however strong the decay (fla's secondary chunking).
        initial_state: ``[B, H, K, V]`` or None (zeros).
        output_final_state: also return the state after the last step.

    Returns:
        ``o [B, H, L, V]`` (input dtype), and ``S_L [B, H, K, V]`` (float32) when asked.
    """
    if chunk_size % sub_chunk_size:
        raise ValueError(f"sub_chunk_size={sub_chunk_size} must divide chunk_size={chunk_size}")
    B, H, L, K = q.shape
    V = v.shape[-1]
    dtype = v.dtype
    C, S_ = chunk_size, sub_chunk_size
    C = min(C, max(S_, -(-L // S_) * S_))  # short sequences: one chunk of whole sub-chunks
    nS = C // S_
    q, k, v, log_g = (pad_time(upcast(t), C) for t in (q * scale, k, v, log_g))
    N = q.shape[2] // C
    q, k, log_g = (t.view(B, H, N, C, K) for t in (q, k, log_g))
    v = v.view(B, H, N, C, V)
    b = log_g.cumsum(dim=3)  # inclusive cumulative log gate within the chunk
    b_last = b[:, :, :, -1]  # [B, H, N, K]

    # --- intra-chunk: off-diagonal sub-chunk blocks (factorised, exponents <= 0)
    qs, ks, bs = (t.view(B, H, N, nS, S_, K) for t in (q, k, b))
    vs = v.view(B, H, N, nS, S_, V)
    # b at the last position before each sub-chunk (0 before the first)
    b_ref = torch.cat((b.new_zeros(B, H, N, 1, K), bs[:, :, :, :-1, -1]), dim=3)  # [B,H,N,nS,K]
    q_t = qs * torch.exp(bs - b_ref[:, :, :, :, None])
    pos = torch.arange(C, device=q.device)
    before = pos[None, :] < (torch.arange(nS, device=q.device) * S_)[:, None]  # [nS, C]
    expo = (b_ref[:, :, :, :, None, :] - b[:, :, :, None, :, :]).masked_fill(
        ~before[:, :, None], float("-inf")
    )  # [B, H, N, nS, C, K]
    k_t = k[:, :, :, None] * torch.exp(expo)
    A_off = (q_t @ k_t.transpose(-1, -2)).view(B, H, N, C, C)  # rows: sub-chunk by sub-chunk
    o = (A_off @ v).view(B, H, N, nS, S_, V)
    # --- intra-chunk: diagonal sub-chunk blocks, pairwise per key
    causal = torch.ones(S_, S_, dtype=torch.bool, device=q.device).tril()
    expo = (bs[..., :, None, :] - bs[..., None, :, :]).masked_fill(
        ~causal[:, :, None], float("-inf")
    )  # [B, H, N, nS, S, S, K]
    A_diag = (qs[..., :, None, :] * ks[..., None, :, :] * torch.exp(expo)).sum(-1)
    o = (o + A_diag @ vs).view(B, H, N, C, V)

    # --- inter-chunk: carry the state across chunks
    k_end = k * torch.exp(b_last[:, :, :, None] - b)
    starts, S_final = carry_states(
        torch.exp(b_last), k_end.transpose(-1, -2) @ v, initial_state
    )
    o = o + (q * torch.exp(b)) @ starts
    o = o.view(B, H, N * C, V)[:, :, :L].to(dtype)
    return (o, S_final) if output_final_state else o


def chunk_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_g: torch.Tensor | None = None,
    scale: float = 1.0,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
):
    """Chunked linear attention with one scalar gate per head and step (retention).

    Args:
        q, k: ``[B, H, L, K]``; v: ``[B, H, L, V]``.
        log_g: ``[B, H, L]`` log forget gate (``<= 0``), or ``None`` for no decay (plain causal
            linear attention, unnormalised).
        scale, chunk_size, initial_state, output_final_state: as in
            :func:`chunk_gla`.

    The intra-chunk decay matrix ``D_ij = exp(b_i - b_j)`` (``j <= i``) is formed pairwise, so it
    is stable for any decay.
    """
    B, H, L, K = q.shape
    V = v.shape[-1]
    dtype = v.dtype
    C = min(chunk_size, L)
    q, k, v = (pad_time(upcast(t), C) for t in (q * scale, k, v))
    N = q.shape[2] // C
    q, k = q.view(B, H, N, C, K), k.view(B, H, N, C, K)
    v = v.view(B, H, N, C, V)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    A = q @ k.transpose(-1, -2)
    if log_g is None:
        o = A.masked_fill(~causal, 0.0) @ v
        starts, S_final = carry_states(None, k.transpose(-1, -2) @ v, initial_state)
        o = o + q @ starts
    else:
        b = pad_time(upcast(log_g), C).view(B, H, N, C).cumsum(-1)
        b_last = b[..., -1]
        D = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")))
        o = (A * D) @ v
        k_end = k * torch.exp(b_last[..., None] - b)[..., None]
        starts, S_final = carry_states(
            torch.exp(b_last), k_end.transpose(-1, -2) @ v, initial_state
        )
        o = o + (q * torch.exp(b)[..., None]) @ starts
    o = o.view(B, H, N * C, V)[:, :, :L].to(dtype)
    return (o, S_final) if output_final_state else o



def recurrent_gla(q, k, v, log_g, scale=1.0, initial_state=None):
    """The plain loop (:func:`.naive.naive_gla`, ``log_g [B, H, L, K]``): ``(o, S_L)``."""
    return naive_gla(q, k, v, log_g, scale, initial_state, output_final_state=True)


def recurrent_simple_gla(q, k, v, log_g=None, scale=1.0, initial_state=None):
    """The plain loop (:func:`.naive.naive_simple_gla`, ``log_g [B, H, L]`` or None):
    ``(o, S_L)``."""
    return naive_simple_gla(q, k, v, log_g, scale, initial_state, output_final_state=True)
