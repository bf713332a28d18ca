"""The suite model (``tasks/*.yaml``): which task settings to train, with which hyperparameter
grid. Loading a suite and expanding it into settings: :mod:`mad_bench.suite`."""
from __future__ import annotations

import itertools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .tasks import get_task


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    lr: list[float] = Field([1e-4, 5e-4, 1e-3], min_length=1)
    weight_decay: list[float] = Field([0.0, 0.1], min_length=1)
    d_model: list[int] | None = Field(
        None, min_length=1, description="widths every spec is run at (None: each spec's own)")

    def points(self) -> list[tuple[float, float]]:
        return list(itertools.product(self.lr, self.weight_decay))


class TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    baseline: dict[str, Any] = Field(default_factory=dict)
    changes: dict[str, list[Any]] = Field(default_factory=dict)
    settings: list[dict[str, Any]] = Field(
        default_factory=list, description="extra settings, each a set of variables over the baseline "
                                          "(a 'training' key overrides training for that setting)")
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of the suite's training")


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    name: str
    description: str | None = None
    training: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields")
    grid: Grid = Field(default_factory=Grid)
    tasks: dict[str, TaskEntry] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: dict[str, TaskEntry]) -> dict[str, TaskEntry]:
        for name in tasks:
            get_task(name)  # KeyError with a did-you-mean
        return tasks
