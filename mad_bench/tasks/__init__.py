"""Task generators (MAD-Lab tasks + Zoology MQAR).

``TASKS`` maps task names to their ``TaskSetting`` subclass; ``get_task(name)`` looks one up
with a did-you-mean error; ``parse_setting(dict)`` validates a setting through the
discriminated union on ``task``.  See ``base.py`` for the target conventions and seeding.
"""
from __future__ import annotations

import difflib
from typing import Annotated, Union

import pydantic

from .base import IGNORE_INDEX, TaskData, TaskSetting, make_generator, split_seed
from .compression import CompressionSetting
from .copying import SelectiveCopyingSetting
from .memorization import MemorizationSetting
from .mqar import MQARMixtureSetting, MQARSetting
from .recall import FuzzyInContextRecallSetting, InContextRecallSetting, NoisyInContextRecallSetting

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
_ADAPTER = pydantic.TypeAdapter(AnyTaskSetting)


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


__all__ = [
    "TASKS", "get_task", "parse_setting", "AnyTaskSetting", "TaskData", "TaskSetting",
    "IGNORE_INDEX", "split_seed", "make_generator",
    "InContextRecallSetting", "FuzzyInContextRecallSetting", "NoisyInContextRecallSetting",
    "SelectiveCopyingSetting", "CompressionSetting", "MemorizationSetting", "MQARSetting",
    "MQARMixtureSetting",
]
