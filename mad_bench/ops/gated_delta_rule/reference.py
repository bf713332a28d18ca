"""The gated delta rule in torch: the chunked form (the parallel path) and the plain recurrence.

Layout as in flash-linear-attention: ``q, k [B, H, L, K]``, ``v [B, H, L, V]``, ``beta [B, H, L]``,
``log_g [B, H, L]`` (log of the decay, ``<= 0``), states ``S [B, H, K, V]`` (key-major)::

    S_t = g_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,      o_t = scale * S_t^T q_t

(Yang, Kautz & Hatamizadeh, 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
eq. 10; ``log_g = 0`` is DeltaNet's delta rule, ``beta = 0`` with ``k v^T`` added is Mamba-2's.)

Chunked form (their eqs. 11-13, derived here with the cumulative log decay ``b_t`` of the chunk,
``Gamma_t = exp(b_t)``): writing ``S_t = Gamma_t S_0 + sum_{i<=t} exp(b_t - b_i) k_i u_i^T``, the
pseudo-values solve ``(I + A) U = diag(beta) V - diag(beta Gamma) K S_0`` with
``A_ti = beta_t exp(b_t - b_i) k_t . k_i`` for ``i < t``; so with ``T = (I + A)^-1`` (a triangular
solve), ``u = T beta V`` and ``w = T diag(beta Gamma) K``::

    O   = (diag(Gamma) Q - (Q K^T . D) w) S_0 + (Q K^T . D) u,      D_ti = exp(b_t - b_i), i <= t
    S_C = Gamma_C S_0 + Kt^T u - Kt^T w S_0,                         Kt_i = exp(b_C - b_i) k_i

Every exponent is ``<= 0``, so the form is stable for any decay. Linear in L (one Python step
per chunk carries the state).
"""
from __future__ import annotations

import torch

from .naive import naive_gated_delta_rule

__all__ = ["chunk_gated_delta_rule", "recurrent_gated_delta_rule"]


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = (-x.shape[2]) % multiple
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[2] = pad
    return torch.cat((x, x.new_zeros(shape)), dim=2)


def chunk_gated_delta_rule(q, k, v, beta, log_g, scale: float = 1.0, chunk_size: int = 64,
                           initial_state=None, output_final_state: bool = False):
    """Chunked gated delta rule; returns ``o [B, H, L, V]`` (v's dtype) and, when asked, the
    final state ``[B, H, K, V]`` (float32, float64 for float64 inputs). Padding (zero keys,
    beta 0, log decay 0) changes neither the outputs kept nor the final state."""
    B, H, L, K = q.shape
    V = v.shape[-1]
    dtype = v.dtype
    C = min(chunk_size, L)
    q, k, v = (_pad(_f(t), C) for t in (q * scale, k, v))
    beta, log_g = _pad(_f(beta), C), _pad(_f(log_g), C)
    N = q.shape[2] // C
    q, k = q.view(B, H, N, C, K), k.view(B, H, N, C, K)
    v = v.view(B, H, N, C, V)
    beta = beta.view(B, H, N, C, 1)
    b = log_g.view(B, H, N, C).cumsum(-1)
    gamma = torch.exp(b)[..., None]  # [B, H, N, C, 1]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    D = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")))
    kk = k @ k.transpose(-1, -2)
    A = (beta * kk * D).tril(-1)
    eye = torch.eye(C, device=q.device, dtype=q.dtype)
    rhs = torch.cat((beta * v, beta * gamma * k), dim=-1)
    sol = torch.linalg.solve_triangular(A + eye, rhs, upper=False, unitriangular=True)
    u, w = sol[..., :V], sol[..., V:]
    Aqk = (q @ k.transpose(-1, -2)) * D
    q_eff = gamma * q - Aqk @ w
    o = Aqk @ u
    k_end = k * torch.exp(b[..., -1:, None] - b[..., None])
    kt = k_end.transpose(-1, -2)
    ktu, ktw = (kt @ u).unbind(2), (kt @ w).unbind(2)
    g_end = torch.exp(b[..., -1]).unbind(2)  # [B, H] per chunk
    S = q.new_zeros(B, H, K, V) if initial_state is None else _f(initial_state).to(q.dtype)
    starts = []
    for n in range(N):
        starts.append(S)
        S = g_end[n][..., None, None] * S + ktu[n] - ktw[n] @ S
    o = o + q_eff @ torch.stack(starts, dim=2)
    o = o.view(B, H, N * C, V)[:, :, :L].to(dtype)
    return (o, S) if output_final_state else o


def recurrent_gated_delta_rule(q, k, v, beta, log_g, scale: float = 1.0, initial_state=None):
    """The plain loop (:func:`.naive.naive_gated_delta_rule`) with its final state: ``(o, S_L)``."""
    return naive_gated_delta_rule(q, k, v, beta, log_g, scale, initial_state,
                                  output_final_state=True)
