"""Torch reference of the delta rule (DeltaNet; Schlag et al. 2021, Yang et al. 2024).

Layout as flash-linear-attention: ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, ``beta [B, H, L]``,
states ``S [B, H, K, V]``::

    S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = S_t^T (scale * q_t)

:func:`chunk_delta_rule` is the chunked WY / UT form (float32 inside, float64 stays float64);
:func:`recurrent_delta_rule` the plain loop over time (:mod:`.naive`, the tests' ground truth).
"""
from __future__ import annotations

import torch

from ..utils import pad_time, upcast

from .naive import naive_delta_rule

__all__ = ["chunk_delta_rule", "recurrent_delta_rule"]


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    scale: float = 1.0,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
):
    """Chunked delta rule (DeltaNet) in the WY / UT form of Yang et al. 2024.

    Args:
        q, k: ``[B, H, L, K]`` (the caller L2-normalises them: the recurrence is only
            contractive for ``||k|| <= 1`` and ``beta`` in [0, 1]); v: ``[B, H, L, V]``.
        beta: ``[B, H, L]`` write strength.
        scale, chunk_size, initial_state, output_final_state: as in
            :func:`mad_bench.ops.gla.reference.chunk_gla`.

    Per chunk with start state ``S_0``, writing ``S_t = S_0 + sum_{i<=t} k_i u_i^T``, the
    pseudo-values solve ``(I + tril(diag(beta) K K^T, -1)) U = diag(beta) (V - K S_0)``, i.e.
    ``U = T beta V - T beta K S_0`` with the unit-lower-triangular ``T`` (the UT transform,
    computed by a triangular solve). Then ``O = Q S_0 + tril(Q K^T) U`` and
    ``S_C = S_0 + K^T U``.
    """
    B, H, L, K = q.shape
    V = v.shape[-1]
    dtype = v.dtype
    C = min(chunk_size, L)
    q, k, v = (pad_time(upcast(t), C) for t in (q * scale, k, v))
    beta = pad_time(upcast(beta), C)
    N = q.shape[2] // C
    q, k = q.view(B, H, N, C, K), k.view(B, H, N, C, K)
    v = v.view(B, H, N, C, V)
    beta = beta.view(B, H, N, C, 1)
    strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    A = (beta * (k @ k.transpose(-1, -2))).masked_fill(~strict, 0.0)
    eye = torch.eye(C, device=q.device, dtype=q.dtype)
    rhs = torch.cat((beta * v, beta * k), dim=-1)
    sol = torch.linalg.solve_triangular(A + eye, rhs, upper=False, unitriangular=True)
    u, w = sol[..., :V], sol[..., V:]  # U = T beta V, W = T beta K
    Aqk = (q @ k.transpose(-1, -2)).tril()
    # everything that does not involve the chunk-start state, batched over chunks:
    # o = (Q - Aqk W) S_0 + Aqk U,   S_C = S_0 + K^T U - (K^T W) S_0
    q_eff = q - Aqk @ w
    o = Aqk @ u
    kt = k.transpose(-1, -2)
    ktu, ktw = (kt @ u).unbind(2), (kt @ w).unbind(2)
    S = (
        q.new_zeros(B, H, K, V)
        if initial_state is None
        else initial_state.to(q.dtype)
    )
    starts = []
    for n in range(N):
        starts.append(S)
        S = S + ktu[n] - ktw[n] @ S
    o = o + q_eff @ torch.stack(starts, dim=2)
    o = o.view(B, H, N * C, V)[:, :, :L].to(dtype)
    return (o, S) if output_final_state else o



def recurrent_delta_rule(q, k, v, beta, scale=1.0, initial_state=None):
    """The plain loop (:func:`.naive.naive_delta_rule`) with its final state: ``(o, S_L)``."""
    return naive_delta_rule(q, k, v, beta, scale, initial_state, output_final_state=True)
