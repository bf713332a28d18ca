"""Token accuracies: micro (plain) and macro (MAD-Lab's metric), streaming-friendly.

MAD-Lab reports ``torchmetrics.classification.MulticlassAccuracy(num_classes=vocab,
ignore_index=-100)`` whose default ``average="macro"``.  Semantics reproduced here
(torchmetrics 1.x, ``_accuracy_reduce`` + ``_adjust_weights_safe_divide``):

* positions whose target is ``ignore_index`` are dropped (prediction included);
* per class c: ``tp_c`` = correct predictions of c, ``fn_c`` = targets c predicted wrong,
  ``fp_c`` = predictions c at positions whose target is another class;
  ``score_c = tp_c / (tp_c + fn_c)`` (recall of c, 0 when c has no support);
* macro = mean of ``score_c`` over the classes with ``tp_c + fp_c + fn_c > 0``, i.e. classes
  that occur in the targets OR in the predictions (of non-ignored positions).  A class that
  is only predicted, never a target, counts with score 0; a class absent from both is
  excluded.  No class at all -> 0.
  (torchmetrics < 1.0 averaged over all ``num_classes``; MAD-Lab pins no version.)

Streaming: ``accuracy_counts`` returns per-class ``tp``, ``support`` (target count) and
``predicted`` (prediction count) as int64 tensors on the input's device, computed with
``scatter_add_`` (no host sync); add them over batches and call ``finalize``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE_INDEX


def _preds(logits_or_preds: torch.Tensor) -> torch.Tensor:
    if logits_or_preds.is_floating_point():
        return logits_or_preds.argmax(dim=-1)
    return logits_or_preds


@dataclass
class AccuracyCounts:
    tp: torch.Tensor  # [C] int64, correct predictions per target class
    support: torch.Tensor  # [C] int64, number of (non-ignored) targets per class
    predicted: torch.Tensor  # [C] int64, number of predictions per class at non-ignored positions

    def __add__(self, other: "AccuracyCounts") -> "AccuracyCounts":
        return AccuracyCounts(self.tp + other.tp, self.support + other.support,
                              self.predicted + other.predicted)

    def add_(self, other: "AccuracyCounts") -> "AccuracyCounts":
        self.tp += other.tp
        self.support += other.support
        self.predicted += other.predicted
        return self

    @classmethod
    def zeros(cls, num_classes: int, device=None) -> "AccuracyCounts":
        z = lambda: torch.zeros(num_classes, dtype=torch.long, device=device)  # noqa: E731
        return cls(z(), z(), z())

    def micro(self) -> torch.Tensor:
        total = self.support.sum()
        return torch.where(total > 0, self.tp.sum() / total.clamp_min(1), torch.zeros((), device=total.device))

    def macro(self) -> torch.Tensor:
        tp, sup, pred = self.tp.double(), self.support.double(), self.predicted.double()
        fn = sup - tp
        fp = pred - tp
        score = torch.where(sup > 0, tp / sup.clamp_min(1), torch.zeros_like(tp))
        w = ((tp + fp + fn) > 0).double()
        wsum = w.sum()
        return torch.where(wsum > 0, (w * score).sum() / wsum.clamp_min(1), torch.zeros_like(wsum)).float()


def accuracy_counts(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                    ignore_index: int = IGNORE_INDEX) -> AccuracyCounts:
    """Per-class counts of one batch.  ``logits`` ``[..., C]`` float, or int predictions
    shaped like ``targets``.  Predictions outside ``[0, num_classes)`` raise nothing but are
    counted in no class (they are still wrong)."""
    preds = _preds(logits).reshape(-1)
    tg = targets.reshape(-1)
    if preds.shape != tg.shape:
        raise ValueError(f"predictions {tuple(preds.shape)} and targets {tuple(tg.shape)} differ in size")
    C = num_classes
    valid = tg != ignore_index
    dump = torch.full_like(tg, C)
    t_idx = torch.where(valid & (tg >= 0) & (tg < C), tg, dump)
    p_idx = torch.where(valid & (preds >= 0) & (preds < C), preds, dump)
    ones = torch.ones_like(tg)

    def count(idx):
        return torch.zeros(C + 1, dtype=torch.long, device=tg.device).scatter_add_(0, idx, ones)[:C]

    correct = valid & (preds == tg)
    return AccuracyCounts(tp=count(torch.where(correct, t_idx, dump)), support=count(t_idx),
                          predicted=count(p_idx))


def finalize(counts: AccuracyCounts) -> dict[str, float]:
    """``{"acc": micro, "acc_macro": macro}`` as Python floats (one host sync)."""
    return {"acc": float(counts.micro()), "acc_macro": float(counts.macro())}


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Micro accuracy over positions whose target is not ``ignore_index`` (0 if none)."""
    preds = _preds(logits)
    valid = targets != ignore_index
    n = valid.sum()
    correct = ((preds == targets) & valid).sum()
    return torch.where(n > 0, correct / n.clamp_min(1), torch.zeros((), device=targets.device))


def macro_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """torchmetrics ``MulticlassAccuracy(average="macro", ignore_index=...)`` semantics."""
    return accuracy_counts(logits, targets, num_classes, ignore_index).macro()
