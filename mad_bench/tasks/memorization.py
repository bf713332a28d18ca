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

import torch

from ..configs.tasks import MemorizationSetting, Split
from .base import IGNORE_INDEX, TaskData, shared_generator


def kv_map(setting: MemorizationSetting, seed: int) -> torch.LongTensor:
    """``values[k]`` for every key k (``[num_keys]``), same for both splits."""
    g = shared_generator(seed if setting.map_seed is None else setting.map_seed, "memorization-map")
    nk = setting.num_keys()
    nv = setting.vocab_size - 1 - nk
    return torch.randperm(nv, generator=g)[:nk] + nk


def memorization_examples(setting: MemorizationSetting, n: int, split: Split, g: torch.Generator,
                          seed: int) -> TaskData:
    values = kv_map(setting, seed)
    P = setting.seq_len // 2
    keys = torch.randint(setting.num_keys(), (n, P), generator=g)
    x = torch.empty(n, setting.seq_len, dtype=torch.long)
    x[:, 0::2] = keys
    x[:, 1::2] = setting.insert_token()
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, 1::2] = values[keys]
    return TaskData(x, y, y)
