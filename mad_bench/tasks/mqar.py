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
from typing import ClassVar, Literal

import pydantic
import torch

from .base import (
    IGNORE_INDEX, Split, TaskData, TaskSetting, field_error, make_generator, sample_distinct,
)


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


# ----------------------------------------------------------------------------- Zoology's mixture


class MQARSegment(pydantic.BaseModel):
    """One (seq_len, num_kv_pairs) block of examples of a mixture (Zoology's ``MQARConfig``).

    Written as a mapping or as the compact ``"SEQ_LENxKV:N"`` (``"64x4:100000"``), which is also
    how it is dumped, so result rows hold one short string per mixture side."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    seq_len: int = pydantic.Field(ge=4, le=1 << 20)
    num_kv_pairs: int = pydantic.Field(ge=1)
    num_examples: int = pydantic.Field(ge=1)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _parse(cls, data):
        if isinstance(data, str):
            try:
                shape, n = data.split(":")
                L, kv = shape.split("x")
                return {"seq_len": int(L), "num_kv_pairs": int(kv), "num_examples": int(n)}
            except ValueError:
                raise ValueError(f"segment {data!r}: expected 'SEQ_LENxKV:N', e.g. '64x4:100000'") from None
        return data

    @pydantic.model_serializer
    def _compact(self) -> str:
        return f"{self.seq_len}x{self.num_kv_pairs}:{self.num_examples}"

    @property
    def name(self) -> str:
        return f"seq_len={self.seq_len}/num_kv_pairs={self.num_kv_pairs}"


@dataclass
class SegmentedTaskData(TaskData):
    """TaskData whose rows come from several segments: ``segments[i]`` is row i's segment."""
    segments: torch.LongTensor | None = None


# Zoology's mixture (its arxiv24_based_figure2 configs): 100k + 4 x 20k train, 7 x 1000 test
ZOOLOGY_TRAIN = ("64x4:100000", "128x8:20000", "256x16:20000", "256x32:20000", "256x64:20000")
ZOOLOGY_TEST = ("64x4:1000", "64x8:1000", "64x16:1000", "128x32:1000", "256x64:1000",
                "512x128:1000", "1024x256:1000")
SEGMENT_COLUMN = "seg_acc/"  # result-row columns: "seg_acc/seq_len=64/num_kv_pairs=4"


class MQARMixtureSetting(TaskSetting):
    """MQAR the way Zoology trains it: one model on a mixture of (seq_len, kv pairs) segments,
    tested on several segments, with the accuracy of each test segment as a result column.

    Each segment is generated as :func:`generate_mqar` makes one ``mqar`` setting (its own
    shapes, keys from the lower and values from the upper half of the vocabulary, power-law
    query gaps), segments one after another from the split's generator. Shorter segments are
    right-padded to the longest (inputs 0, targets -100): every mixer is causal, so padding
    changes no scored prediction. ``seq_len`` and the example counts follow from the segments.
    Differences from Zoology: a batch may mix segments (Zoology's batches hold one segment
    each), and padding costs compute on the short segments.
    """

    task: Literal["mqar-mixture"] = "mqar-mixture"
    vocab_size: int = pydantic.Field(default=8192, ge=4, le=1 << 24)
    seq_len: int = pydantic.Field(default=0, ge=0, description="derived: the longest segment")
    num_train_examples: int = pydantic.Field(default=0, ge=0, description="derived: sum of train_segments")
    num_test_examples: int = pydantic.Field(default=0, ge=0, description="derived: sum of test_segments")
    train_segments: tuple[MQARSegment, ...] = pydantic.Field(
        default=ZOOLOGY_TRAIN, min_length=1, validate_default=True,
        description="segments trained on together (default: the Based paper's figure-2 mixture)")
    test_segments: tuple[MQARSegment, ...] = pydantic.Field(
        default=ZOOLOGY_TEST, min_length=1, validate_default=True,
        description="segments scored one by one (default: the Based paper's figure-2 test set)")
    power_a: float = pydantic.Field(default=0.01, gt=0.0, le=1.0)
    random_non_queries: bool = True

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        derived = {"seq_len": max(s.seq_len for s in self.train_segments + self.test_segments),
                   "num_train_examples": sum(s.num_examples for s in self.train_segments),
                   "num_test_examples": sum(s.num_examples for s in self.test_segments)}
        for key, value in derived.items():
            if getattr(self, key) not in (0, value):
                raise field_error(key, f"follows from the segments ({value}); leave it out, got "
                                        f"{getattr(self, key)}")
            object.__setattr__(self, key, value)
        for side in ("train_segments", "test_segments"):
            segs = getattr(self, side)
            for i, s in enumerate(segs):
                try:
                    MQARSetting(vocab_size=self.vocab_size, seq_len=s.seq_len,
                                num_kv_pairs=s.num_kv_pairs)
                except pydantic.ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise field_error(f"{side}[{i}]", msg) from None
            if len({s.name for s in segs}) < len(segs):
                raise field_error(side, "two segments share a (seq_len, num_kv_pairs)")
        return self

    def segments(self, split: Split) -> tuple[MQARSegment, ...]:
        return self.train_segments if split == "train" else self.test_segments

    def generate(self, split: Split, seed: int) -> SegmentedTaskData:
        g = make_generator(seed, split)
        segs = self.segments(split)
        n, L = sum(s.num_examples for s in segs), max(s.seq_len for s in segs)
        inputs = torch.zeros(n, L, dtype=torch.long)
        targets = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        ids = torch.empty(n, dtype=torch.long)
        lo = 0
        for i, s in enumerate(segs):
            inp, tg = generate_mqar(s.num_examples, s.seq_len, self.vocab_size, s.num_kv_pairs,
                                    self.power_a, self.random_non_queries, g)
            hi = lo + s.num_examples
            inputs[lo:hi, :s.seq_len], targets[lo:hi, :s.seq_len], ids[lo:hi] = inp, tg, i
            lo = hi
        return SegmentedTaskData(inputs, targets, targets, split, segments=ids)

    @torch.no_grad()
    def test_columns(self, model, inputs: torch.Tensor, data: SegmentedTaskData,
                     batch_size: int) -> dict[str, float]:
        """Accuracy of ``model`` on each test segment: ``{"seg_acc/seq_len=L/num_kv_pairs=K": acc}``
        (the trainer's hook for extra result columns, called on the final model)."""
        n = len(self.test_segments)
        ids = data.segments.to(inputs.device)
        targets = data.targets.to(inputs.device)
        correct = torch.zeros(n, dtype=torch.long, device=inputs.device)
        total = torch.zeros_like(correct)
        for i in range(0, inputs.shape[0], batch_size):
            c, t = segment_counts(model(inputs[i:i + batch_size]), targets[i:i + batch_size],
                                  ids[i:i + batch_size], n)
            correct += c
            total += t
        return self.segment_columns(correct, total)

    def segment_columns(self, correct: torch.Tensor, total: torch.Tensor) -> dict[str, float]:
        """One run's result columns from its per-segment counts ``[S]`` (one host sync); a
        segment with no scored position reads 0."""
        acc = (correct.double() / total.clamp_min(1)).tolist()
        return {SEGMENT_COLUMN + s.name: a for s, a in zip(self.test_segments, acc)}



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
