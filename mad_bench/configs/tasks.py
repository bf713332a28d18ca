"""Task settings: each task's typed, bounded variables, discriminated on ``task`` (no torch).

A setting says which examples to make; :mod:`mad_bench.tasks` makes them (one generator per
task, ``mad_bench.tasks.generate(setting, split, seed)``); its modules' docstrings give each
task's layout and targets. ``TASKS`` maps task names to their setting class.
"""
from __future__ import annotations

import difflib
from typing import Annotated, ClassVar, Literal, Optional, Union

import pydantic

Split = Literal["train", "test"]


def field_error(field: str, msg: str) -> ValueError:
    return ValueError(f"{field}: {msg}")


class TaskSetting(pydantic.BaseModel):
    """One task setting: the task name (discriminator) and its typed, bounded variables.

    Validation errors are ``pydantic.ValidationError`` (a subclass of ``ValueError``) and
    always name the offending field.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, defer_build=True)

    task: str
    vocab_size: int = pydantic.Field(ge=2, le=1 << 20)
    seq_len: int = pydantic.Field(ge=2, le=1 << 20)
    num_train_examples: int = pydantic.Field(default=12_800, ge=1)
    num_test_examples: int = pydantic.Field(default=1_280, ge=1)

    backbone: ClassVar[str] = "lm"

    def model_vocab_size(self) -> int:
        """Size of the embedding / output head (MAD-Lab's vocab_size includes special tokens)."""
        return self.vocab_size

    def num_examples(self, split: Split) -> int:
        return self.num_train_examples if split == "train" else self.num_test_examples

    def chunk_examples(self) -> int:
        return max(64, (1 << 20) // self.seq_len)

    def variables(self) -> dict:
        """The setting's variables (for result rows)."""
        return self.model_dump()


# recall (generator: mad_bench/tasks/recall.py) ---------------------------------------------------


class InContextRecallSetting(TaskSetting):
    task: Literal["in-context-recall"] = "in-context-recall"
    vocab_size: int = pydantic.Field(default=16, ge=2, le=1 << 20)
    seq_len: int = pydantic.Field(default=128, ge=4, le=1 << 20)

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.seq_len % 2:
            raise field_error("seq_len", f"must be even (key/value slots of 2 tokens), got {self.seq_len}")
        nsv = self.vocab_size - self._noise_vocab()
        if nsv < 2:
            raise field_error("vocab_size", f"needs >= 2 non-noise tokens (1 key, 1 value), got {nsv}")
        return self

    def _noise_vocab(self) -> int:
        return 0

    def _frac_noise(self) -> float:
        return 0.0

    def key_vocab(self) -> range:
        return range(0, (self.vocab_size - self._noise_vocab()) // 2)

    def value_vocab(self) -> range:
        nsv = self.vocab_size - self._noise_vocab()
        return range(nsv // 2, nsv)

    def noise_vocab(self) -> range:
        nsv = self.vocab_size - self._noise_vocab()
        return range(nsv, self.vocab_size)


class NoisyInContextRecallSetting(InContextRecallSetting):
    task: Literal["noisy-in-context-recall"] = "noisy-in-context-recall"  # type: ignore[assignment]
    vocab_size: int = pydantic.Field(default=32, ge=3, le=1 << 20)
    noise_vocab_size: int = pydantic.Field(default=16, ge=1)
    frac_noise: float = pydantic.Field(default=0.2, ge=0.0, lt=1.0)

    @pydantic.model_validator(mode="after")
    def _check_noise(self):
        if self.noise_vocab_size >= self.vocab_size - 1:
            raise field_error("noise_vocab_size", f"must leave >= 2 key/value tokens in vocab_size="
                               f"{self.vocab_size}, got {self.noise_vocab_size}")
        return self

    def _noise_vocab(self) -> int:
        return self.noise_vocab_size

    def _frac_noise(self) -> float:
        return self.frac_noise


class FuzzyInContextRecallSetting(TaskSetting):
    task: Literal["fuzzy-in-context-recall"] = "fuzzy-in-context-recall"
    vocab_size: int = pydantic.Field(default=16, ge=3, le=1 << 16)
    seq_len: int = pydantic.Field(default=128, ge=4, le=1 << 20)
    k_motif_size: int = pydantic.Field(default=3, ge=1, le=8)
    v_motif_size: int = pydantic.Field(default=3, ge=1, le=8)

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        nk = (self.vocab_size - 1) // 2
        nv = self.vocab_size - 1 - nk
        if nk < self.k_motif_size:
            raise field_error("vocab_size", f"{self.vocab_size} gives {nk} key tokens, fewer than "
                               f"k_motif_size={self.k_motif_size} (motifs use distinct tokens)")
        if nv < self.v_motif_size:
            raise field_error("vocab_size", f"{self.vocab_size} gives {nv} value tokens, fewer than "
                               f"v_motif_size={self.v_motif_size} (motifs use distinct tokens)")
        if (nk + 1) ** self.k_motif_size >= 1 << 62:
            raise field_error("k_motif_size", "too large for this vocab_size (key ids overflow int64)")
        if self.seq_len <= 2 * (self.k_motif_size + self.v_motif_size):
            raise field_error("seq_len", f"must be > 2*(k_motif_size+v_motif_size)="
                               f"{2 * (self.k_motif_size + self.v_motif_size)}, got {self.seq_len}")
        return self

    def pad_token(self) -> int:
        return self.vocab_size - 1

    def key_vocab(self) -> range:
        return range(0, (self.vocab_size - 1) // 2)

    def value_vocab(self) -> range:
        return range((self.vocab_size - 1) // 2, self.vocab_size - 1)


# copying (generator: mad_bench/tasks/copying.py) -------------------------------------------------


class SelectiveCopyingSetting(TaskSetting):
    task: Literal["selective-copying"] = "selective-copying"
    vocab_size: int = pydantic.Field(default=16, ge=3, le=1 << 20)
    seq_len: int = pydantic.Field(default=256, ge=4, le=1 << 20)
    num_tokens_to_copy: int = pydantic.Field(default=16, ge=1)

    backbone: ClassVar[str] = "lm"

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.seq_len <= 2 * self.num_tokens_to_copy + 1:
            raise field_error("seq_len", f"must be > 2*num_tokens_to_copy+1="
                               f"{2 * self.num_tokens_to_copy + 1}, got {self.seq_len}")
        return self

    def blank_token(self) -> int:
        return self.vocab_size - 2

    def copy_token(self) -> int:
        return self.vocab_size - 1


# compression (generator: mad_bench/tasks/compression.py) -----------------------------------------


class CompressionSetting(TaskSetting):
    task: Literal["compression"] = "compression"
    vocab_size: int = pydantic.Field(default=16, ge=2, le=1 << 20)
    seq_len: int = pydantic.Field(default=32, ge=2, le=1 << 20)

    backbone: ClassVar[str] = "autoencoder"

    def compression_token(self) -> int:
        return self.vocab_size - 1


# memorization (generator: mad_bench/tasks/memorization.py) ---------------------------------------


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


# mqar (generator: mad_bench/tasks/mqar.py) -------------------------------------------------------


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


class MQARSegment(pydantic.BaseModel):
    """One (seq_len, num_kv_pairs) block of examples of a mixture (Zoology's ``MQARConfig``).

    Written as a mapping or as the compact ``"SEQ_LENxKV:N"`` (``"64x4:100000"``), which is also
    how it is dumped, so result rows hold one short string per mixture side."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, defer_build=True)
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


# Zoology's mixture (its arxiv24_based_figure2 configs): 100k + 4 x 20k train, 7 x 1000 test
ZOOLOGY_TRAIN = ("64x4:100000", "128x8:20000", "256x16:20000", "256x32:20000", "256x64:20000")
ZOOLOGY_TEST = ("64x4:1000", "64x8:1000", "64x16:1000", "128x32:1000", "256x64:1000",
                "512x128:1000", "1024x256:1000")


class MQARMixtureSetting(TaskSetting):
    """MQAR the way Zoology trains it: one model on a mixture of (seq_len, kv pairs) segments,
    tested on several segments, with the accuracy of each test segment as a result column.

    Each segment is generated as :func:`mad_bench.tasks.mqar.generate_mqar` makes one ``mqar`` setting (its own
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


TASKS: dict[str, type[TaskSetting]] = {
    "in-context-recall": InContextRecallSetting,
    "fuzzy-in-context-recall": FuzzyInContextRecallSetting,
    "noisy-in-context-recall": NoisyInContextRecallSetting,
    "selective-copying": SelectiveCopyingSetting,
    "compression": CompressionSetting,
    "memorization": MemorizationSetting,
    "mqar": MQARSetting,
    "mqar-mixture": MQARMixtureSetting,
}

AnyTaskSetting = Annotated[
    Union[tuple(TASKS.values())],  # type: ignore[valid-type]
    pydantic.Field(discriminator="task"),
]
_ADAPTER = pydantic.TypeAdapter(AnyTaskSetting, config=pydantic.ConfigDict(defer_build=True))


def get_task(name: str) -> type[TaskSetting]:
    """The setting class of a task, or a ``KeyError`` that suggests the closest names."""
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(TASKS), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}") from None


def parse_setting(data: dict | TaskSetting) -> TaskSetting:
    """Validate a task setting given as a dict with a ``task`` key."""
    if isinstance(data, TaskSetting):
        return data
    if isinstance(data, dict) and "task" in data:
        get_task(data["task"])  # did-you-mean error before pydantic's union error
    return _ADAPTER.validate_python(data)
