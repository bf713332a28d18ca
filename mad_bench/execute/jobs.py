"""The jobs of a benchmark: planned runs through the plain trainer (one request per job) or
the ensemble engine (one lr x wd grid per job). Trials of tune / search are jobs too
(:class:`mad_bench.tune.worker.TrialJob`) and train their runs through :func:`run_group`."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..runs import RunRequest, run_one

ENGINES = ("plain", "ensemble")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        close = difflib.get_close_matches(engine, ENGINES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"--engine: unknown engine {engine!r} ({hint}valid: {', '.join(ENGINES)})")
    return engine


def job_groups(requests: list[RunRequest], engine: str) -> list[list[RunRequest]]:
    """The requests cut into the units one engine trains at once: single runs for ``plain``,
    lr x wd grids for ``ensemble``."""
    if check_engine(engine) == "ensemble":
        from ..engine.execute import group_requests

        return group_requests(requests)
    return [[r] for r in requests]


def run_group(group: Sequence[RunRequest], engine: str, device: str | None, *, progress=None,
              on_eval: Sequence[Callable | None] | None = None, options: Any = None) -> list[dict]:
    """The rows of one group of :func:`job_groups`, in request order (never raises for a run
    that fails: it becomes a ``failed`` row). ``on_eval``: a trainer callback per request."""
    if check_engine(engine) == "ensemble":
        from ..engine.execute import run_grid_rows

        return run_grid_rows(list(group), device, options, progress=progress, on_eval=on_eval)
    callbacks = list(on_eval) if on_eval is not None else [None] * len(group)
    return [run_one(r, device, progress=progress, on_eval=cb) for r, cb in zip(group, callbacks)]


@dataclass
class RunsJob:
    """Runs of one group through one engine; the result is their rows, in request order."""

    requests: list[RunRequest]
    engine: str = "plain"
    number: int = 0
    attempt: int = 0
    options: Any = None             # EngineOptions for the ensemble engine

    @property
    def handle(self) -> str:
        return f"runs-{self.number}.{self.attempt}"

    def retry(self) -> "RunsJob":
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def run(self, report, device: str | None, progress=None) -> list[dict]:
        return run_group(self.requests, self.engine, device, progress=progress, options=self.options)
