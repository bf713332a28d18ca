"""Compression (MAD-Lab ``generate_compression_instance`` semantics; autoencoder backbone).

``seq_len - 1`` tokens drawn uniformly (with replacement) from ``[0, V-1)`` followed by the
compression token ``V-1``.  Targets equal the inputs at every position, the compression
token included (MAD-Lab returns ``inputs, inputs``); the same on both splits.  The model
(autoencoder backbone) pools the last position and decodes every position from it.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import pydantic
import torch

from .base import Split, TaskData, TaskSetting


class CompressionSetting(TaskSetting):
    task: Literal["compression"] = "compression"
    vocab_size: int = pydantic.Field(default=16, ge=2, le=1 << 20)
    seq_len: int = pydantic.Field(default=32, ge=2, le=1 << 20)

    backbone: ClassVar[str] = "autoencoder"

    def compression_token(self) -> int:
        return self.vocab_size - 1

    def _generate(self, n: int, split: Split, g: torch.Generator, seed: int) -> TaskData:
        x = torch.empty(n, self.seq_len, dtype=torch.long)
        x[:, :-1] = torch.randint(self.vocab_size - 1, (n, self.seq_len - 1), generator=g)
        x[:, -1] = self.vocab_size - 1
        y = x.clone()
        return TaskData(x, y, y)
