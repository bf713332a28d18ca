"""A benchmark's job: one unit of a grid (:meth:`.engines.Engine.units`) through its engine.
Trials of tune / search are jobs too (:class:`mad_bench.tune.worker.TrialJob`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .engines import Engine
from .plan import Grid


@dataclass
class GridJob:
    """The result is the grid's rows, in member order."""

    grid: Grid
    engine: Engine
    number: int = 0
    attempt: int = 0

    @property
    def handle(self) -> str:
        return f"runs-{self.number}.{self.attempt}"

    @property
    def requests(self) -> list:
        return self.grid.requests

    def retry(self) -> "GridJob":
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def run(self, report, device: str | None, progress=None) -> list[dict]:
        return self.engine.rows(self.grid, device, progress=progress)
