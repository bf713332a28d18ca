"""Selective copying (MAD-Lab ``generate_selective_copying_instance`` semantics).

Vocab: data tokens ``[0, V-2)``, ``blank = V-2``, ``copy = V-1``.  With
``n = num_tokens_to_copy`` and ``b = seq_len - 2n - 1`` blanks, a sequence is

    [data tokens with b blanks scattered before them] COPY [blank x n]

of exactly ``seq_len`` tokens.  Targets (both splits, no autoregressive shift -- MAD-Lab
returns ``inputs, targets`` unshifted): ``-100`` on the first ``n + b + 1`` positions (up to
and including COPY), then the n data tokens in order on the n trailing blank positions.
Blank placement follows MAD-Lab's ``np.insert(tokens, randint(0, n, size=b), blank)``: each
blank independently goes into one of the n gaps *before* a data token (multinomial gap
counts), so the last data token always sits right before COPY.  MAD-Lab draws these
indices from numpy's unseeded global RNG; here they come from the task's generator.
Data tokens are drawn with replacement.
"""
from __future__ import annotations

import torch

from ..configs.tasks import SelectiveCopyingSetting, Split
from .base import IGNORE_INDEX, TaskData


def generate_selective_copying(n_ex: int, seq_len: int, vocab_size: int, n: int, g: torch.Generator):
    blank, copy = vocab_size - 2, vocab_size - 1
    b = seq_len - 2 * n - 1
    data = torch.randint(vocab_size - 2, (n_ex, n), generator=g)
    gaps = torch.randint(n, (n_ex, b), generator=g)
    counts = torch.zeros(n_ex, n, dtype=torch.long).scatter_add_(1, gaps, torch.ones_like(gaps))
    pos = torch.arange(n) + counts.cumsum(1)  # blanks in gaps 0..i precede data token i
    inputs = torch.full((n_ex, seq_len), blank, dtype=torch.long)
    inputs.scatter_(1, pos, data)
    inputs[:, n + b] = copy
    targets = torch.full((n_ex, seq_len), IGNORE_INDEX, dtype=torch.long)
    targets[:, n + b + 1:] = data
    return inputs, targets


def copying_examples(setting: SelectiveCopyingSetting, n: int, split: Split, g: torch.Generator,
                     seed: int) -> TaskData:
    inp, tg = generate_selective_copying(n, setting.seq_len, setting.vocab_size,
                                         setting.num_tokens_to_copy, g)
    return TaskData(inp, tg, tg)
