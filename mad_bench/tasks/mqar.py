"""Multi-query associative recall (Zoology ``zoology/data/multiquery_ar.py`` semantics).

Keys from ``[1, V//2)``, values from ``[V//2, V)``; per example ``num_kv_pairs`` distinct keys
and distinct values (without replacement, random order).  Layout of the ``seq_len + 1`` raw
tokens: all pairs first (``k0 v0 k1 v1 ...``, ``2*num_kv_pairs`` tokens), then a query region
of ``space = (seq_len - 2*num_kv_pairs) // 2`` two-token slots; query i's key goes to the
first token of slot ``gap_i``; gaps are drawn without replacement with Zoology's power law
``p(slot s) ~ (s+1)**(power_a - 1)`` (``power_a=0.01``: queries cluster right after the
context; ``power_a=1``: uniform) -- sampled by Gumbel-top-k, which equals numpy's sequential
``choice(replace=False, p=...)``.  Inputs ``raw[:-1]`` (``seq_len`` tokens); targets score
only the answers: the value at the position of its query key; every other target is -100,
on both splits (Zoology trains on answers only).  With ``random_non_queries`` every other
query-region token is uniform over ``[0, V)`` (Zoology), otherwise 0.  Zoology's extra
``assert vocab_size > input_seq_len`` is not needed by the layout and is not enforced.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configs.tasks import MQARMixtureSetting, MQARSetting, Split
from .base import IGNORE_INDEX, TaskData, make_generator, sample_distinct


def generate_mqar(n: int, seq_len: int, vocab_size: int, kv: int, power_a: float,
                  random_non_queries: bool, g: torch.Generator):
    half = vocab_size // 2
    keys = sample_distinct(n, kv, half - 1, g) + 1
    vals = sample_distinct(n, kv, vocab_size - half, g) + half
    ctx = 2 * kv
    space = (seq_len - ctx) // 2
    logp = (power_a - 1.0) * torch.log(torch.arange(1, space + 1, dtype=torch.float64))
    u = torch.rand(n, space, generator=g, dtype=torch.float64).clamp_min(1e-300)
    gaps = (logp - torch.log(-torch.log(u))).topk(kv, dim=1).indices
    raw = torch.zeros(n, seq_len + 1, dtype=torch.long)
    raw[:, 0:ctx:2] = keys
    raw[:, 1:ctx:2] = vals
    qpos = ctx + 2 * gaps
    raw.scatter_(1, qpos, keys)
    inputs = raw[:, :-1].clone()
    if random_non_queries:
        filler = torch.ones_like(inputs, dtype=torch.bool)
        filler[:, :ctx] = False
        filler.scatter_(1, qpos, False)
        inputs = torch.where(filler, torch.randint(vocab_size, inputs.shape, generator=g), inputs)
    targets = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets.scatter_(1, qpos, vals)
    return inputs, targets


def mqar_examples(setting: MQARSetting, n: int, split: Split, g: torch.Generator,
                  seed: int) -> TaskData:
    inp, tg = generate_mqar(n, setting.seq_len, setting.vocab_size, setting.num_kv_pairs,
                            setting.power_a, setting.random_non_queries, g)
    return TaskData(inp, tg, tg)


# ----------------------------------------------------------------------------- Zoology's mixture


@dataclass
class SegmentedTaskData(TaskData):
    """TaskData whose rows come from several segments: ``segments[i]`` is row i's segment."""
    segments: torch.LongTensor | None = None


SEGMENT_COLUMN = "seg_acc/"  # result-row columns: "seg_acc/seq_len=64/num_kv_pairs=4"


def segment_counts(logits: torch.Tensor, targets: torch.Tensor, segments: torch.Tensor,
                   num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per segment: correct predictions and scored positions (targets != -100) of a batch.
    ``logits [N, L, V]`` (or predictions ``[N, L]``), ``segments [N]``."""
    preds = logits.argmax(-1) if logits.is_floating_point() else logits
    scored = targets != IGNORE_INDEX
    hit = (preds == targets) & scored
    rows = segments.to(torch.long)
    correct = torch.zeros(num_segments, dtype=torch.long, device=targets.device)
    total = torch.zeros_like(correct)
    correct.scatter_add_(0, rows, hit.sum(1))
    total.scatter_add_(0, rows, scored.sum(1))
    return correct, total


def generate_mixture(setting: MQARMixtureSetting, split: Split, seed: int) -> SegmentedTaskData:
    """Every segment of the split, one after another from the split's generator, each as
    :func:`generate_mqar` makes one ``mqar`` setting, right-padded to the longest (inputs 0,
    targets -100)."""
    g = make_generator(seed, split)
    segs = setting.segments(split)
    n, L = sum(s.num_examples for s in segs), max(s.seq_len for s in segs)
    inputs = torch.zeros(n, L, dtype=torch.long)
    targets = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
    ids = torch.empty(n, dtype=torch.long)
    lo = 0
    for i, s in enumerate(segs):
        inp, tg = generate_mqar(s.num_examples, s.seq_len, setting.vocab_size, s.num_kv_pairs,
                                setting.power_a, setting.random_non_queries, g)
        hi = lo + s.num_examples
        inputs[lo:hi, :s.seq_len], targets[lo:hi, :s.seq_len], ids[lo:hi] = inp, tg, i
        lo = hi
    return SegmentedTaskData(inputs, targets, targets, split, segments=ids)


@torch.no_grad()
def mixture_columns(setting: MQARMixtureSetting, model, inputs: torch.Tensor,
                         data: SegmentedTaskData, batch_size: int) -> dict[str, float]:
    """Accuracy of ``model`` on each test segment: ``{"seg_acc/seq_len=L/num_kv_pairs=K": acc}``
    (the trainer's hook for extra result columns, called on the final model)."""
    n = len(setting.test_segments)
    ids = data.segments.to(inputs.device)
    targets = data.targets.to(inputs.device)
    correct = torch.zeros(n, dtype=torch.long, device=inputs.device)
    total = torch.zeros_like(correct)
    for i in range(0, inputs.shape[0], batch_size):
        c, t = segment_counts(model(inputs[i:i + batch_size]), targets[i:i + batch_size],
                              ids[i:i + batch_size], n)
        correct += c
        total += t
    return segment_columns(setting, correct, total)


def segment_columns(setting: MQARMixtureSetting, correct: torch.Tensor,
                    total: torch.Tensor) -> dict[str, float]:
    """One run's result columns from its per-segment counts ``[S]`` (one host sync); a
    segment with no scored position reads 0."""
    acc = (correct.double() / total.clamp_min(1)).tolist()
    return {SEGMENT_COLUMN + s.name: a for s, a in zip(setting.test_segments, acc)}
