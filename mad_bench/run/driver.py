"""Run a plan against a results store: keep what the store lacks, cut it into jobs for one
engine, run them on an executor and write each row, atomically, as its job lands: a killed
benchmark loses only the jobs in flight and resumes by skipping the rest.

:func:`prepare` says what there is to do (``bench`` / ``run`` print it before anything
trains); :func:`execute` does it; :func:`run_plan` is both, for library use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..results.store import ResultsStore
from .engines import Engine, make_engine
from .executors import Executor, make_executor
from .executors.loop import drive_jobs
from .jobs import GridJob
from .options import ExecOptions
from .plan import Grid, RunRequest, requests_of
from .rows import make_row


@dataclass
class Work:
    """What a plan leaves to do: ``jobs`` (the engine's units of the grids' missing members)."""

    engine: Engine
    requests: list[RunRequest]     # every run of the plan
    jobs: list[Grid]
    skipped: int                   # runs already in the store

    @property
    def todo(self) -> list[RunRequest]:
        return requests_of(self.jobs)


def missing(grid: Grid, store: ResultsStore) -> Grid:
    """The grid's members without a result in the store. A stored failed run is retried (its
    row is replaced); a diverged run is a result."""
    return grid.select([i for i, req in enumerate(grid) if not store.has_result(req.key)])


def prepare(grids: Sequence[Grid], store: ResultsStore, engine: Engine, force: bool = False) -> Work:
    """The plan's work against ``store`` (everything with ``force``)."""
    todo = [g if force else missing(g, store) for g in grids]
    requests = requests_of(grids)
    jobs = [unit for g in todo if len(g) for unit in engine.units(g)]
    return Work(engine, requests, jobs, len(requests) - sum(len(g) for g in todo))


def execute(work: Work, store: ResultsStore, executor: Executor, *, device: str | None = None,
            on_row: Callable[[RunRequest, dict, int, int], None] | None = None,
            progress_factory: Callable[[Grid], Any] | None = None, max_retries: int = 2) -> list[dict]:
    """Run ``work``'s jobs on ``executor``; the new rows. ``on_row(request, row, done, total)``
    as each row lands; ``progress_factory(grid)`` gives a progress object per job where jobs
    run in this process. A job whose worker died is retried ``max_retries`` times, then its
    runs are ``failed`` rows."""
    rows: list[dict] = []
    total = len(work.todo)
    if not work.jobs:
        return rows
    store.ensure_writable()
    jobs = iter([GridJob(grid, work.engine, number=i) for i, grid in enumerate(work.jobs)])

    def land(job: GridJob, job_rows: list[dict]) -> None:
        for req, row in zip(job.grid, job_rows):
            store.write(req.key, row)
            rows.append(row)
            if on_row:
                on_row(req, row, len(rows), total)

    def give_up(job: GridJob, reason: str) -> None:
        from ..train.core import resolve_device

        dev = resolve_device(device)
        land(job, [make_row(r, None, dev, error=f"worker died: {reason}") for r in job.grid])

    bars = None
    if progress_factory and not executor.isolated:  # a bar cannot follow a job elsewhere

        def bars(job: GridJob):
            return progress_factory(job.grid)
    drive_jobs(executor, lambda: next(jobs, None), land, give_up, max_retries=max_retries,
               progress_factory=bars)
    return rows


def run_plan(grids: Sequence[Grid], store: ResultsStore, options: ExecOptions | None = None,
             force: bool = False, on_row=None) -> tuple[list[dict], int]:
    """Run what the store lacks of ``grids`` (all with ``force``) as ``options`` say; returns
    (new rows, number of runs skipped)."""
    options = options or ExecOptions()
    engine = make_engine(options.engine, options.device, options.engine_options)
    work = prepare(grids, store, engine, force)
    if not work.jobs:
        return [], work.skipped
    with make_executor(options, jobs=len(work.jobs)) as executor:
        rows = execute(work, store, executor, device=options.device, on_row=on_row,
                       max_retries=options.max_retries)
    return rows, work.skipped
