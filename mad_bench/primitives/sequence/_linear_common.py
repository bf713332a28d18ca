"""Shared pieces of the linear-attention family: chunked torch forms and naive recurrences.

Every function here works in flash-linear-attention's layout: ``q, k [B, H, L, K]``,
``v [B, H, L, V]``, states ``S [B, H, K, V]`` (key-major: ``o_t = S_t^T q_t``). They compute in
float32 whatever the input dtype and return the input dtype. The ``chunk_*`` functions are
linear in ``L`` (intra-chunk masked matmuls + a short Python loop over ``L / chunk_size``
chunks that carries the state); the ``recurrent_*`` functions are plain loops over time, kept
as the independent references (tests, Triton kernels) and the definition of each recurrence.

Recurrences (per batch and head; ``g_t = exp(log_g_t)``):

- gated linear attention (GLA, Yang et al. 2023), per-key gate ``log_g [B, H, L, K]``::

      S_t = diag(g_t) S_{t-1} + k_t v_t^T,        o_t = S_t^T (scale * q_t)

- simple gated / retention (RetNet, Sun et al. 2023), one gate per head and step
  ``log_g [B, H, L]`` (``None``: no decay, plain linear attention, Katharopoulos et al. 2020)::

      S_t = g_t S_{t-1} + k_t v_t^T,              o_t = S_t^T (scale * q_t)

- delta rule (DeltaNet; Schlag et al. 2021, Yang et al. 2024), ``beta [B, H, L]``::

      S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = S_t^T (scale * q_t)

All sequences are zero-padded to a multiple of the chunk size (padding has gate 1 / beta 0 and
zero keys, so it changes neither the outputs kept nor the final state).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "chunk_gated_linear_attention",
    "chunk_simple_gla",
    "chunk_delta_rule",
    "recurrent_gated_linear_attention",
    "recurrent_simple_gla",
    "recurrent_delta_rule",
    "chunked_flops_per_token",
    "HeadNorm",
    "CausalShortConv",
]


def _f(x: torch.Tensor) -> torch.Tensor:
    """Upcast to at least float32 (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _pad_time(x: torch.Tensor | None, multiple: int, dim: int = 2) -> torch.Tensor | None:
    if x is None:
        return None
    L = x.shape[dim]
    pad = (-L) % multiple
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat((x, x.new_zeros(shape)), dim=dim)


def _carry_states(
    decay: torch.Tensor | None, update: torch.Tensor, initial_state: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """State at the start of every chunk, and after the last one.

    ``update [B, H, N, K, V]`` is each chunk's own contribution; ``decay`` is each chunk's total
    gate, ``[B, H, N, K]`` (per key), ``[B, H, N]`` (per head) or ``None`` (no decay).
    """
    B, H, N, K, V = update.shape
    S = (
        update.new_zeros(B, H, K, V)
        if initial_state is None
        else initial_state.to(update.dtype)
    )
    if decay is None:  # no decay: the states are an exclusive cumulative sum
        ends = S[:, :, None] + update.cumsum(dim=2)
        return ends - update, ends[:, :, -1]
    decay = (decay[..., None] if decay.dim() == 4 else decay[..., None, None]).unbind(2)
    starts = []
    for n, upd in enumerate(update.unbind(2)):  # unbind: one backward node, not N selects
        starts.append(S)
        S = decay[n] * S + upd
    return torch.stack(starts, dim=2), S


def chunk_gated_linear_attention(
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
    q, k, v, log_g = (_pad_time(_f(t), C) for t in (q * scale, k, v, log_g))
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
    starts, S_final = _carry_states(
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
            :func:`chunk_gated_linear_attention`.

    The intra-chunk decay matrix ``D_ij = exp(b_i - b_j)`` (``j <= i``) is formed pairwise, so it
    is stable for any decay.
    """
    B, H, L, K = q.shape
    V = v.shape[-1]
    dtype = v.dtype
    C = min(chunk_size, L)
    q, k, v = (_pad_time(_f(t), C) for t in (q * scale, k, v))
    N = q.shape[2] // C
    q, k = q.view(B, H, N, C, K), k.view(B, H, N, C, K)
    v = v.view(B, H, N, C, V)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    A = q @ k.transpose(-1, -2)
    if log_g is None:
        o = A.masked_fill(~causal, 0.0) @ v
        starts, S_final = _carry_states(None, k.transpose(-1, -2) @ v, initial_state)
        o = o + q @ starts
    else:
        b = _pad_time(_f(log_g), C).view(B, H, N, C).cumsum(-1)
        b_last = b[..., -1]
        D = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")))
        o = (A * D) @ v
        k_end = k * torch.exp(b_last[..., None] - b)[..., None]
        starts, S_final = _carry_states(
            torch.exp(b_last), k_end.transpose(-1, -2) @ v, initial_state
        )
        o = o + (q * torch.exp(b)[..., None]) @ starts
    o = o.view(B, H, N * C, V)[:, :, :L].to(dtype)
    return (o, S_final) if output_final_state else o


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
            :func:`chunk_gated_linear_attention`.

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
    q, k, v = (_pad_time(_f(t), C) for t in (q * scale, k, v))
    beta = _pad_time(_f(beta), C)
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


# ----------------------------------------------------------------------------- references


def recurrent_gated_linear_attention(q, k, v, log_g, scale=1.0, initial_state=None):
    """Naive per-step GLA (``log_g [B, H, L, K]``); returns ``(o, S_L)``."""
    B, H, L, K = q.shape
    dtype = v.dtype
    q, k, v, log_g = _f(q), _f(k), _f(v), _f(log_g)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else _f(initial_state)
    outs = []
    for t in range(L):
        S = torch.exp(log_g[:, :, t])[..., None] * S + k[:, :, t, :, None] * v[:, :, t, None]
        outs.append((q[:, :, t, None] * scale) @ S)
    return torch.cat(outs, dim=2).to(dtype), S


def recurrent_simple_gla(q, k, v, log_g=None, scale=1.0, initial_state=None):
    """Naive per-step retention / linear attention (``log_g [B, H, L]`` or None)."""
    if log_g is not None:
        log_g = log_g[..., None].expand(*q.shape)
    else:
        log_g = torch.zeros_like(q)
    return recurrent_gated_linear_attention(q, k, v, log_g, scale, initial_state)


def recurrent_delta_rule(q, k, v, beta, scale=1.0, initial_state=None):
    """Naive per-step delta rule; returns ``(o, S_L)``."""
    B, H, L, K = q.shape
    dtype = v.dtype
    q, k, v, beta = _f(q), _f(k), _f(v), _f(beta)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else _f(initial_state)
    outs = []
    for t in range(L):
        k_t, v_t, b_t = k[:, :, t], v[:, :, t], beta[:, :, t]
        pred = (k_t[..., None] * S).sum(-2)  # S^T k_t, [B, H, V]
        S = S + b_t[..., None, None] * k_t[..., :, None] * (v_t - pred)[..., None, :]
        outs.append((q[:, :, t, None] * scale) @ S)
    return torch.cat(outs, dim=2).to(dtype), S


# ----------------------------------------------------------------------------- modules / misc


def chunked_flops_per_token(
    n_heads: int, key_dim: int, value_dim: int, chunk_size: int, seq_len: int
) -> float:
    """Mixing FLOPs per token of a chunked linear-attention form (per-head dims).

    Intra-chunk scores and their product with values over the average causal context within a
    chunk (``min(chunk, L) / 2``), plus reading the chunk-start state and writing the update.
    """
    ctx = min(chunk_size, seq_len) / 2
    return n_heads * (2.0 * ctx * (key_dim + value_dim) + 4.0 * key_dim * value_dim)


class HeadNorm(nn.Module):
    """Normalisation over the last (per-head) dim with a weight shared across heads.

    ``kind='rms'`` is fla's / MAD-Lab's per-head RMSNorm; ``kind='layer'`` is RetNet's GroupNorm
    (one group per head = LayerNorm over each head's features, affine).
    """

    def __init__(self, dim: int, kind: str = "rms", eps: float = 1e-5):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class CausalShortConv(nn.Module):
    """Depthwise causal convolution over time (``[B, L, D] -> [B, L, D]``) with a step form.

    The step state is the last ``kernel_size - 1`` inputs, ``[B, D, kernel_size - 1]``.
    """

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(
            dim, dim, kernel_size, groups=dim, padding=kernel_size - 1, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        return self.conv(x.transpose(1, 2))[..., :L].transpose(1, 2)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        dim = self.conv.weight.shape[0]
        return torch.zeros(batch_size, dim, self.kernel_size - 1, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat((cache.to(x_t.dtype), x_t[:, :, None]), dim=-1)  # [B, D, k]
        y = (window * self.conv.weight[:, 0]).sum(-1)
        return y, window[:, :, 1:]


def key_value_gcd(d_model: int, expand_k: float, expand_v: float) -> float:
    """The largest width that divides both the key and the value width (what heads must divide);
    a non-integer width is returned as is (``check`` names it)."""
    dk, dv = d_model * expand_k, d_model * expand_v
    if dk != int(dk) or dv != int(dv):
        return dk if dk != int(dk) else dv
    return math.gcd(int(dk), int(dv))


def head_width(d_model: int, expand: float, field: str, n_heads: int) -> int:
    """``d_model * expand``, checked to be an integer that ``n_heads`` divides."""
    dim = d_model * expand
    if dim != int(dim) or int(dim) % n_heads:
        raise ValueError(
            f"{field}={expand} gives width {dim} at d_model={d_model}, "
            f"which must be an integer divisible by n_heads={n_heads}"
        )
    return int(dim)


def add_qkv_projections(layer: nn.Module, cfg, d_model: int) -> None:
    """The multi-head q/k/v projections the linear-attention layers share (no bias); sets
    ``n_heads``, ``key_dim``, ``value_dim`` and the per-head ``dk``, ``dv`` on ``layer``."""
    H = layer.n_heads = cfg.n_heads
    layer.key_dim = head_width(d_model, cfg.expand_k, "expand_k", H)
    layer.value_dim = head_width(d_model, cfg.expand_v, "expand_v", H)
    layer.dk, layer.dv = layer.key_dim // H, layer.value_dim // H
    layer.q_proj = nn.Linear(d_model, layer.key_dim, bias=False)
    layer.k_proj = nn.Linear(d_model, layer.key_dim, bias=False)
    layer.v_proj = nn.Linear(d_model, layer.value_dim, bias=False)
