"""Task generators (MAD-Lab tasks + Zoology MQAR): the examples of a task setting.

The settings (typed, bounded variables; ``TASKS``, ``get_task``, ``parse_setting``) are in
:mod:`mad_bench.configs.tasks`; ``generate(setting, split, seed)`` makes a split's examples with
the task's generator from ``GENERATORS``. See ``base.py`` for the target conventions and
seeding, each task's module for its layout.
"""
from __future__ import annotations

from typing import Callable

from ..configs.tasks import TASKS, Split, TaskSetting
from . import compression, copying, memorization, mqar, recall
from .base import IGNORE_INDEX, TaskData, chunked, make_generator, split_seed

GENERATORS: dict[str, Callable[[TaskSetting, Split, int], TaskData]] = {
    "in-context-recall": chunked(recall.recall_examples),
    "fuzzy-in-context-recall": chunked(recall.fuzzy_examples),
    "noisy-in-context-recall": chunked(recall.recall_examples),
    "selective-copying": chunked(copying.copying_examples),
    "compression": chunked(compression.compression_examples),
    "memorization": chunked(memorization.memorization_examples),
    "mqar": chunked(mqar.mqar_examples),
    "mqar-mixture": mqar.generate_mixture,
}
if set(GENERATORS) != set(TASKS):
    raise ImportError(f"task settings without a generator: {sorted(set(TASKS) - set(GENERATORS))}; "
                      f"generators without a setting: {sorted(set(GENERATORS) - set(TASKS))}")

EXTRA_COLUMNS = {"mqar-mixture": mqar.mixture_columns}
"""Tasks with extra result columns: ``hook(setting, model, inputs, test_data, batch_size)``."""


def generate(setting: TaskSetting, split: Split, seed: int) -> TaskData:
    """``num_{split}_examples`` examples of ``setting``, deterministic in (setting, split, seed)."""
    return GENERATORS[setting.task](setting, split, seed)


def extra_columns(setting: TaskSetting) -> Callable | None:
    """The setting's extra-columns hook bound to it (``hook(model, inputs, data, batch_size)``),
    or None for a task without one."""
    hook = EXTRA_COLUMNS.get(setting.task)
    return None if hook is None else (lambda *args: hook(setting, *args))


__all__ = ["GENERATORS", "IGNORE_INDEX", "TaskData", "generate", "make_generator", "split_seed",
           "extra_columns"]
