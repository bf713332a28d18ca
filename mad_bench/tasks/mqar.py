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

from typing import ClassVar, Literal

import pydantic
import torch

from .base import IGNORE_INDEX, Split, TaskData, TaskSetting, field_error, sample_distinct


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


class MQARSetting(TaskSetting):
    task: Literal["mqar"] = "mqar"
    vocab_size: int = pydantic.Field(default=8192, ge=4, le=1 << 24)
    seq_len: int = pydantic.Field(default=64, ge=4, le=1 << 20)
    num_kv_pairs: int = pydantic.Field(default=8, ge=1)
    power_a: float = pydantic.Field(default=0.01, gt=0.0, le=1.0)
    random_non_queries: bool = True

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.seq_len % 2:
            raise field_error("seq_len", f"must be even, got {self.seq_len}")
        if 4 * self.num_kv_pairs > self.seq_len:
            raise field_error("seq_len", f"must be >= 4*num_kv_pairs={4 * self.num_kv_pairs} "
                               f"(pairs + as many query slots), got {self.seq_len}")
        nk = self.vocab_size // 2 - 1
        nv = self.vocab_size - self.vocab_size // 2
        if self.num_kv_pairs > min(nk, nv):
            raise field_error("vocab_size", f"{self.vocab_size} gives {nk} keys / {nv} values, fewer "
                               f"than num_kv_pairs={self.num_kv_pairs} distinct ones")
        return self

    def key_vocab(self) -> range:
        return range(1, self.vocab_size // 2)

    def value_vocab(self) -> range:
        return range(self.vocab_size // 2, self.vocab_size)

    def _generate(self, n: int, split: Split, g: torch.Generator, seed: int) -> TaskData:
        inp, tg = generate_mqar(n, self.seq_len, self.vocab_size, self.num_kv_pairs, self.power_a,
                                self.random_non_queries, g)
        return TaskData(inp, tg, tg)
