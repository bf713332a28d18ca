"""Compression (MAD-Lab ``generate_compression_instance`` semantics; autoencoder backbone).

``seq_len - 1`` tokens drawn uniformly (with replacement) from ``[0, V-1)`` followed by the
compression token ``V-1``.  Targets equal the inputs at every position, the compression
token included (MAD-Lab returns ``inputs, inputs``); the same on both splits.  The model
(autoencoder backbone) pools the last position and decodes every position from it.
"""
from __future__ import annotations

import torch

from ..configs.tasks import CompressionSetting, Split
from .base import TaskData


def compression_examples(setting: CompressionSetting, n: int, split: Split, g: torch.Generator,
                         seed: int) -> TaskData:
    x = torch.empty(n, setting.seq_len, dtype=torch.long)
    x[:, :-1] = torch.randint(setting.vocab_size - 1, (n, setting.seq_len - 1), generator=g)
    x[:, -1] = setting.compression_token()
    y = x.clone()
    return TaskData(x, y, y)


