"""Per-member accuracy counts for an ensemble: the semantics of ``tasks.metrics.accuracy_counts``
for ``G`` prediction sets against one shared target tensor, in one scatter per count.

Everything stays on the device and is free of host syncs (capturable in a CUDA graph).
"""
from __future__ import annotations

import torch

from ..tasks.base import IGNORE_INDEX
from ..tasks.metrics import AccuracyCounts


def batched_counts(preds: torch.Tensor, targets: torch.Tensor, num_classes: int,
                   offsets: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """``preds[G, M]`` (int), ``targets[M]`` -> ``(tp, support, predicted)`` each ``[G, C]`` int64.

    ``offsets`` is ``arange(G)[:, None] * (C + 1)`` (passed in so a captured graph holds no
    host-built constant). Member g's rows equal ``accuracy_counts(preds[g], targets, C)``.
    """
    G, C = preds.shape[0], num_classes
    valid = targets != ignore_index
    dump = torch.full_like(targets, C)
    t_idx = torch.where(valid & (targets >= 0) & (targets < C), targets, dump)  # [M]
    p_ok = valid[None] & (preds >= 0) & (preds < C)
    p_idx = torch.where(p_ok, preds, C)  # [G, M]
    correct = valid[None] & (preds == targets[None])
    tp_idx = torch.where(correct, t_idx[None], C)
    ones = torch.ones(tp_idx.numel(), dtype=torch.long, device=preds.device)

    def count(idx):  # idx [G, M] in [0, C] -> [G, C]
        flat = (idx + offsets).reshape(-1)
        out = torch.zeros(G * (C + 1), dtype=torch.long, device=preds.device)
        return out.scatter_add_(0, flat, ones).view(G, C + 1)[:, :C]

    support = torch.zeros(C + 1, dtype=torch.long, device=preds.device)
    support = support.scatter_add_(0, t_idx, ones[: t_idx.numel()])[:C]
    return count(tp_idx), support.expand(G, C), count(p_idx)


def member_counts(tp: torch.Tensor, support: torch.Tensor, predicted: torch.Tensor, g: int) -> AccuracyCounts:
    return AccuracyCounts(tp[g], support[g], predicted[g])


def batched_macro(tp: torch.Tensor, support: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """``[G, C]`` counts of one batch -> ``[G]`` float64 macro accuracy per member, with
    :meth:`AccuracyCounts.macro`'s semantics (classes seen in targets or predictions count)."""
    tp, sup, pred = tp.double(), support.double(), predicted.double()
    score = torch.where(sup > 0, tp / sup.clamp_min(1), torch.zeros_like(tp))
    seen = ((sup + pred - tp) > 0).double()  # tp + fp + fn > 0
    wsum = seen.sum(-1)
    return torch.where(wsum > 0, (seen * score).sum(-1) / wsum.clamp_min(1), torch.zeros_like(wsum))
