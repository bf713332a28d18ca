"""What to train: run requests and the plan (spec x suite setting x seed x lr x wd grid).

A :class:`Grid` is the lr x weight-decay points of one (spec, setting, seed), kept as one object
from the plan to the engine: the ensemble engine trains it at once, the plain engine one member
at a time. Its members are training configs validated here, once (bounds, ``min_lr <= lr``),
and built from one base config, so they differ only in lr and weight decay by construction.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

from pydantic import ValidationError

from ..results.store import run_key
from ..configs.architecture import ArchitectureSpec
from ..configs.errors import from_validation_error
from ..suite import Setting
from ..configs.train import TrainConfig


@dataclass(frozen=True)
class RunRequest:
    """One run: a spec on a suite setting with one training config; ``key`` names its row."""

    spec: ArchitectureSpec
    setting: Setting
    training: TrainConfig

    @property
    def key(self) -> str:
        return run_key(self.spec.spec_hash(), self.setting.task, self.setting.variables(),
                       self.training.model_dump(mode="json"))

    def describe(self) -> str:
        return (f"{self.spec.name} | {self.setting.task} [{self.setting.setting_id}] "
                f"lr={self.training.lr:g} wd={self.training.weight_decay:g} seed={self.training.seed}")


@dataclass(frozen=True)
class Grid:
    """The members (training configs that differ only in lr / weight decay) of one spec on one
    setting. Iterating gives its run requests, in member order."""

    spec: ArchitectureSpec
    setting: Setting
    members: tuple[TrainConfig, ...]

    @classmethod
    def build(cls, spec: ArchitectureSpec, setting: Setting, base: TrainConfig,
              points: Sequence[tuple[float, float]]) -> "Grid":
        """``base`` at every (lr, weight decay) of ``points`` (a repeated point is kept once)."""
        members = []
        for lr, wd in dict.fromkeys(points):
            try:
                members.append(TrainConfig.model_validate(
                    {**base.model_dump(), "lr": lr, "weight_decay": wd}))
            except ValidationError as exc:
                raise from_validation_error(exc, model=TrainConfig) from None
        return cls(spec, setting, tuple(members))

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[RunRequest]:
        return (RunRequest(self.spec, self.setting, m) for m in self.members)

    @property
    def requests(self) -> list[RunRequest]:
        return list(self)

    def select(self, keep: Sequence[int]) -> "Grid":
        """The members at the indices ``keep``, in that order."""
        return Grid(self.spec, self.setting, tuple(self.members[i] for i in keep))

    def describe(self) -> str:
        if len(self) == 1:
            return next(iter(self)).describe()
        return (f"{self.spec.name} | {self.setting.task} [{self.setting.setting_id}] "
                f"{len(self)} lr x wd points seed={self.members[0].seed}")


def check_backbone(spec: ArchitectureSpec, setting: Setting) -> None:
    need = setting.task_setting.backbone
    if spec.backbone is not None and spec.backbone != need:
        raise ValueError(f"spec {spec.name!r} has backbone {spec.backbone!r} but task "
                         f"{setting.task!r} needs {need!r}")


def plan(specs: Sequence[ArchitectureSpec], settings: Sequence[Setting],
         lrs: Sequence[float] | None = None, wds: Sequence[float] | None = None,
         seeds: Sequence[int] | None = None) -> list[Grid]:
    """One grid per spec x setting x seed over ``lrs`` x ``wds`` (None: the setting's own lr /
    weight decay; ``seeds`` None: the setting's seed)."""
    grids = []
    for spec in specs:
        for setting in settings:
            check_backbone(spec, setting)
            base = setting.training
            points = list(itertools.product(lrs or [base.lr], wds or [base.weight_decay]))
            for seed in seeds or [base.seed]:
                grids.append(Grid.build(spec, setting, base.model_copy(update={"seed": seed}), points))
    return grids


def requests_of(grids: Sequence[Grid]) -> list[RunRequest]:
    return [r for g in grids for r in g]
