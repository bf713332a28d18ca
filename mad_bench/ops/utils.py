"""Small torch helpers shared by the chunked references of several op families."""
from __future__ import annotations

import torch


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Upcast to at least float32 (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def pad_time(x: torch.Tensor | None, multiple: int, dim: int = 2) -> torch.Tensor | None:
    if x is None:
        return None
    L = x.shape[dim]
    pad = (-L) % multiple
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat((x, x.new_zeros(shape)), dim=dim)


def carry_states(
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
