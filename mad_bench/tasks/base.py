"""Base classes shared by all task generators.

Conventions (all tasks)
-----------------------
* ``TaskData.inputs``  -- LongTensor ``[N, L]`` of token ids in ``[0, model_vocab_size())``.
* ``TaskData.targets`` -- LongTensor ``[N, L]``; ``-100`` (``IGNORE_INDEX``) where there is no
  target.  This is *what the split is trained / evaluated on in MAD-Lab*:

  - ``split="train"``: the training targets.  For the recall tasks (in-context, fuzzy,
    noisy) that is next-token prediction on **every** position, noise and pad tokens
    included (MAD-Lab ``instances.py``: ``return inputs[:-1], inputs[1:]`` when
    ``is_training``).  For the other tasks training and evaluation targets are the same.
  - ``split="test"``: the evaluation targets, ``-100`` except at scored positions (for the
    recall tasks: only values whose key appeared earlier in the sequence, plus the final
    query).  MAD-Lab computes the test loss, perplexity and accuracy on exactly these
    targets (``is_training=False``), so a trainer can use ``targets`` as-is on both splits.

* ``TaskData.eval_targets`` -- always the scored-only targets, for either split (identical
  to ``targets`` on the test split and on tasks whose train and test targets coincide).
  Use it to report "train accuracy on scored positions" if wanted.  Where the two coincide
  ``eval_targets`` *is* ``targets`` (same tensor): treat TaskData tensors as read-only.

Seeding
-------
Every ``generate`` call builds its own ``torch.Generator`` seeded by
``split_seed(seed, split)``; the global RNG is never touched.  ``split_seed`` maps
``(seed, split)`` injectively onto 64-bit integers whose lowest bit is the split (0 train,
1 test), so a train stream and a test stream can never share a generator seed, whatever
the two user seeds are.  Same ``(setting, split, seed)`` -> bit-identical tensors.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

from ..configs.tasks import Split, TaskSetting

IGNORE_INDEX = -100
_SPLIT_BIT = {"train": 0, "test": 1}


def split_seed(seed: int, split: str) -> int:
    """Derive the generator seed of one split from a user seed.

    ``(sha256(seed) truncated to 62 bits) << 1 | split_bit``: injective on the split bit, so
    train and test seeds are disjoint sets; distinct user seeds collide only with a
    2**-62 chance.
    """
    if split not in _SPLIT_BIT:
        raise ValueError(f"split: must be 'train' or 'test', got {split!r}")
    h = int.from_bytes(hashlib.sha256(f"mad_bench:{int(seed)}".encode()).digest()[:8], "little")
    return ((h & ((1 << 62) - 1)) << 1) | _SPLIT_BIT[split]


def make_generator(seed: int, split: str) -> torch.Generator:
    """A fresh CPU generator for one (seed, split) stream."""
    return torch.Generator(device="cpu").manual_seed(split_seed(seed, split))


def shared_generator(seed: int, tag: str) -> torch.Generator:
    """A generator that is the SAME for both splits (e.g. memorization's key->value map).

    Its seed is ``sha256(tag, seed)`` with the top bit set, so it lies outside the range of
    ``split_seed`` (< 2**63) and never coincides with a train or test example stream.
    """
    h = int.from_bytes(hashlib.sha256(f"mad_bench:{tag}:{int(seed)}".encode()).digest()[:8], "little")
    return torch.Generator(device="cpu").manual_seed((1 << 63) | (h & ((1 << 63) - 1)))


@dataclass
class TaskData:
    inputs: torch.LongTensor  # [N, L]
    targets: torch.LongTensor  # [N, L]; -100 where not trained (train) / not scored (test)
    eval_targets: torch.LongTensor  # [N, L]; -100 except positions scored at evaluation
    split: str = "train"

    def __post_init__(self) -> None:
        assert self.inputs.shape == self.targets.shape == self.eval_targets.shape

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def scored_mask(self) -> torch.BoolTensor:
        return self.eval_targets != IGNORE_INDEX

    def to(self, device) -> "TaskData":
        return TaskData(self.inputs.to(device), self.targets.to(device),
                        self.eval_targets.to(device), self.split)


Examples = Callable[[TaskSetting, int, Split, torch.Generator, int], TaskData]
"""``examples(setting, n, split, g, seed)``: ``n`` examples of a setting drawn from ``g``."""


def chunked(examples: Examples) -> Callable[[TaskSetting, Split, int], TaskData]:
    """A task's generator from its ``examples`` function: ``num_{split}_examples`` examples,
    deterministic in (setting, split, seed).

    Examples are produced in fixed-size chunks (``setting.chunk_examples()``, about 2**20 tokens,
    a function of ``seq_len`` only) drawn one after another from one generator: this keeps the
    working set cache-sized, and a smaller ``num_train_examples`` yields a prefix of a larger one
    (up to the last, partial chunk).
    """
    def generate(setting: TaskSetting, split: Split, seed: int) -> TaskData:
        g = make_generator(seed, split)
        n = setting.num_examples(split)
        chunk = setting.chunk_examples()
        if n <= chunk:
            data = examples(setting, n, split, g, seed)
        else:
            out = None
            for lo in range(0, n, chunk):
                part = examples(setting, min(chunk, n - lo), split, g, seed)
                if out is None:
                    L = part.inputs.shape[1]
                    same = part.eval_targets is part.targets
                    out = [torch.empty(n, L, dtype=torch.long) for _ in range(2 if same else 3)]
                for o, t in zip(out, (part.inputs, part.targets, part.eval_targets)):
                    o[lo:lo + t.shape[0]] = t
            data = TaskData(out[0], out[1], out[1] if same else out[2])
        data.split = split
        return data

    return generate


def sample_distinct(n_rows: int, s: int, n: int, g: torch.Generator) -> torch.LongTensor:
    """``[n_rows, s]`` ordered samples without replacement from ``range(n)``, uniform over
    injective s-tuples.

    * ``s <= 8``: sequential draws; the t-th draw ``r ~ U[0, n-t)`` is mapped to the r-th
      element of the complement of the previous picks (fixed point of
      ``x = r + #{prev <= x}``, reached in t steps).  O(s^2) elementwise ops, no sort.
    * ``2s > n`` (dense): argsort of uniform noise.
    * otherwise: draw with replacement and redraw later duplicates until none remain; the
      procedure is equivariant under relabelling the vocabulary, hence uniform over
      injective tuples.
    """
    if s > n:
        raise ValueError(f"cannot draw {s} distinct tokens from {n}")
    if n_rows == 0 or s == 0:
        return torch.zeros(n_rows, s, dtype=torch.long)
    if s <= 8:
        out = torch.empty(n_rows, s, dtype=torch.long)
        for t in range(s):
            r = torch.randint(n - t, (n_rows,), generator=g)
            x = r
            prev = out[:, :t]
            for _ in range(t):
                x = r + (prev <= x[:, None]).sum(1)
            out[:, t] = x
        return out
    if 2 * s > n:
        return torch.rand(n_rows, n, generator=g).argsort(dim=1)[:, :s].contiguous()
    x = torch.randint(n, (n_rows, s), generator=g)
    rows = torch.arange(n_rows)
    while rows.numel():
        sub = x[rows]
        sv, si = sub.sort(dim=1, stable=True)
        dup_sorted = torch.zeros_like(sv, dtype=torch.bool)
        dup_sorted[:, 1:] = sv[:, 1:] == sv[:, :-1]
        dup = torch.zeros_like(dup_sorted).scatter_(1, si, dup_sorted)
        k = int(dup.sum())
        if k == 0:
            break
        sub[dup] = torch.randint(n, (k,), generator=g)
        x[rows] = sub
        rows = rows[dup.any(1)]
    return x
