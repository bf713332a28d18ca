"""Torch reference of RWKV-6's WKV: the chunked form (:func:`wkv6_chunked`) and the plain
recurrence (:func:`wkv6_recurrent`, from :mod:`.naive`: the tests' ground truth)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .naive import naive_wkv6

__all__ = ["wkv6_chunked", "wkv6_recurrent"]


def _intra_scores(r, k, a, a_ex):
    """A[t, s] = sum_k r_tk exp(a_ex_tk - a_sk) k_sk for s < t within a chunk (else 0)."""
    C = r.shape[-2]
    diff = a_ex[..., :, None, :] - a[..., None, :, :]  # [B, H, N, C(t), C(s), K], <= 0 for s < t
    strict = torch.ones(C, C, dtype=torch.bool, device=r.device).tril(-1)
    diff = diff.masked_fill(~strict[:, :, None], float("-inf"))
    return ((r[..., :, None, :] * diff.exp()) * k[..., None, :, :]).sum(-1)


def wkv6_chunked(r, k, v, logw, u, chunk: int):
    """o_t = r_t (S_{t-1} + diag(u) k_t^T v_t), S_t = diag(exp(logw_t)) S_{t-1} + k_t^T v_t.

    r, k, v, logw: [B, H, L, K] (logw <= 0); u: [H, K]. Returns o [B, H, L, K] (fp32 math).
    """
    B, H, L, K = r.shape
    dtype = r.dtype
    work = torch.promote_types(dtype, torch.float32)
    r, k, v, logw = (t.to(work) for t in (r, k, v, logw))
    pad = (-L) % chunk
    if pad:
        r, k, v, logw = (F.pad(t, (0, 0, 0, pad)) for t in (r, k, v, logw))
    N = (L + pad) // chunk
    r, k, v, logw = (t.reshape(B, H, N, chunk, K) for t in (r, k, v, logw))
    a = logw.cumsum(-2)  # inclusive in-chunk log decay
    a_ex = a - logw  # exclusive: decay applied to S_{t-1} since the chunk start
    if torch.is_grad_enabled() and any(t.requires_grad for t in (r, k, a)):
        # the [.., C, C, K] intermediates are recomputed in backward instead of being kept
        A = checkpoint(_intra_scores, r, k, a, a_ex, use_reentrant=False)
    else:
        A = _intra_scores(r, k, a, a_ex)
    bonus = (r * u.to(work)[None, :, None, None, :] * k).sum(-1, keepdim=True)
    o = A @ v + bonus * v
    # inter-chunk: states entering each chunk
    a_last = a[..., -1:, :]  # [B, H, N, 1, K]
    dS = (k * (a_last - a).exp()).transpose(-1, -2) @ v  # [B, H, N, K, V]
    decay = a_last[..., 0, :, None].exp()  # [B, H, N, K, 1]
    S = torch.zeros(B, H, K, K, dtype=r.dtype, device=r.device)
    states = []
    for n in range(N):
        states.append(S)
        S = decay[:, :, n] * S + dS[:, :, n]
    S_in = torch.stack(states, dim=2)  # [B, H, N, K, V]
    o = o + (r * a_ex.exp()) @ S_in
    return o.reshape(B, H, N * chunk, K)[:, :, :L].to(dtype)


def wkv6_recurrent(r, k, v, logw, u):
    """The plain loop (:func:`.naive.naive_wkv6`)."""
    return naive_wkv6(r, k, v, logw, u)
