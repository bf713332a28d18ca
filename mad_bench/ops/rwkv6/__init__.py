"""RWKV-6's WKV (data-dependent per-key decay, bonus ``u``). Used by rwkv6.

Torch reference: :func:`.reference.wkv6_chunked` (``chunk_size`` is its chunk). Triton:
:mod:`.triton`, the sequential recurrence with the state in registers (no chunking;
``chunk_size`` does not apply to it; the result is the same up to rounding): exact for any decay
strength, with no division by the decay. The bonus ``u`` may carry a leading member dim, so the
engine's vmap folds all members into one launch.

``impl: auto``: Triton on CUDA (BENCHMARKS.md: timings against the reference and fla's
``chunk_rwkv6``, and what is still to measure).
"""
from __future__ import annotations

from ..dispatch import use_triton
from .reference import wkv6_chunked, wkv6_recurrent
from .triton import wkv6_triton

HAS_TRITON = True

__all__ = ["wkv6", "wkv6_chunked", "wkv6_recurrent", "HAS_TRITON"]


def wkv6(r, k, v, logw, u, chunk_size: int = 16, impl: str = "auto"):
    """RWKV-6 WKV over ``r, k, logw [B, H, L, K]``, ``v [B, H, L, V]``, bonus ``u [H, K]``
    (``logw <= 0`` the log decays) -> ``o [B, H, L, V]`` in v's dtype (fp32 math), from the zero
    state: ``o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)``, ``S_t = diag(exp(logw_t)) S_{t-1} +
    k_t^T v_t``. Gradients for all five inputs."""
    if use_triton(impl, r):
        return wkv6_triton(r, k, v, logw, u)
    return wkv6_chunked(r, k, v, logw, u, chunk_size)
