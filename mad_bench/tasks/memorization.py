"""Memorization (MAD-Lab ``generate_memorization_instance`` / ``generate_kv_map``).

A fixed key->value map is the task: keys ``[0, (V-1)//2)``, values from
``[(V-1)//2, V-1)``, insert token ``V-1``.  The map is a random injection keys -> values
(MAD-Lab zips a shuffled key list with a shuffled value list; with an odd number of
non-special tokens one value is unused).  It is drawn from ``map_seed`` -- by default the run
seed, as MAD-Lab seeds it with ``config.seed`` -- through a generator that does not depend
on the split, so train and test share the map.

A sequence is ``seq_len // 2`` slots ``[key, INSERT]``; keys uniform with replacement over
ALL keys of the map.  Targets (no shift, both splits): ``-100`` at key positions, the key's
value at INSERT positions.  Train and test therefore draw from the same key set (MAD-Lab's
test set is just other random key sequences over the same map); with 256 train examples of
16 keys, keys unseen in training appear at test time once the key count approaches 4096
(vocab 8192), which is what makes the large-vocab settings hard.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import pydantic
import torch

from .base import Split, TaskData, TaskSetting, field_error, shared_generator, IGNORE_INDEX


class MemorizationSetting(TaskSetting):
    task: Literal["memorization"] = "memorization"
    vocab_size: int = pydantic.Field(default=256, ge=4, le=1 << 20)
    seq_len: int = pydantic.Field(default=32, ge=2, le=1 << 20)
    num_train_examples: int = pydantic.Field(default=256, ge=1)
    map_seed: Optional[int] = None  # None -> the run seed (MAD-Lab)

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.seq_len % 2:
            raise field_error("seq_len", f"must be even ([key, insert] slots), got {self.seq_len}")
        return self

    def insert_token(self) -> int:
        return self.vocab_size - 1

    def num_keys(self) -> int:
        return (self.vocab_size - 1) // 2

    def kv_map(self, seed: int) -> torch.LongTensor:
        """``values[k]`` for every key k (``[num_keys]``), same for both splits."""
        g = shared_generator(seed if self.map_seed is None else self.map_seed, "memorization-map")
        nk = self.num_keys()
        nv = self.vocab_size - 1 - nk
        return torch.randperm(nv, generator=g)[:nk] + nk

    def _generate(self, n: int, split: Split, g: torch.Generator, seed: int) -> TaskData:
        values = self.kv_map(seed)
        P = self.seq_len // 2
        keys = torch.randint(self.num_keys(), (n, P), generator=g)
        x = torch.empty(n, self.seq_len, dtype=torch.long)
        x[:, 0::2] = keys
        x[:, 1::2] = self.insert_token()
        y = torch.full_like(x, IGNORE_INDEX)
        y[:, 1::2] = values[keys]
        return TaskData(x, y, y)
