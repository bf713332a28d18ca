"""Plan runs and decide what the store lacks; hand the rest to an executor; write the rows.

``plan`` expands the work (spec x suite setting x grid point x seed) into RunRequests;
``pending`` keeps the ones the store lacks; ``execute`` cuts them into jobs for one engine
(plain: one run per job; ensemble: one lr x wd grid per job), runs them on an executor (local
threads / processes or Ray, :mod:`mad_bench.execute`) and writes each row, atomically, as its
job lands: a killed benchmark loses only the jobs in flight and resumes by skipping the rest.
"""
from __future__ import annotations

from typing import Any, Callable

from pydantic import ValidationError

from .configs.architecture import ArchitectureSpec
from .configs.errors import from_validation_error
from .configs.train import TrainConfig
from .execute import Executor, make_executor
from .execute.jobs import RunsJob, job_groups
from .execute.loop import drive_jobs
from .results.store import ResultsStore
from .runs import RunRequest, make_row
from .suite import Setting
from .train.trainer import resolve_device


def check_backbone(spec: ArchitectureSpec, setting: Setting) -> None:
    need = setting.task_setting.backbone
    if spec.backbone is not None and spec.backbone != need:
        raise ValueError(f"spec {spec.name!r} has backbone {spec.backbone!r} but task "
                         f"{setting.task!r} needs {need!r}")


def plan(specs: list[ArchitectureSpec], settings: list[Setting],
         grid: list[tuple[float, float]] | None = None, seeds: list[int] | None = None) -> list[RunRequest]:
    """Every spec x setting x (lr, wd) x seed. ``grid`` None: the settings' own lr / wd."""
    requests = []
    for spec in specs:
        for setting in settings:
            check_backbone(spec, setting)
            points = grid or [(setting.training.lr, setting.training.weight_decay)]
            for lr, wd in points:
                for seed in seeds or [setting.training.seed]:
                    try:  # validated: bounds and min_lr <= lr
                        cfg = TrainConfig.model_validate(
                            {**setting.training.model_dump(), "lr": lr, "weight_decay": wd, "seed": seed})
                    except ValidationError as exc:
                        raise from_validation_error(exc, model=TrainConfig) from None
                    requests.append(RunRequest(spec, setting, cfg))
    return requests


def resolve_engine(engine: str, device: str | None) -> str:
    """``auto``: the ensemble engine on CUDA (equal per-run results, 3-5x the plain trainer's
    throughput on an H200: BENCHMARKS.md), the plain trainer elsewhere (a CPU gains nothing)."""
    if engine != "auto":
        return engine
    return "ensemble" if resolve_device(device).type == "cuda" else "plain"


def pending(requests: list[RunRequest], store: ResultsStore,
            force: bool = False) -> tuple[list[RunRequest], int]:
    """The requests without a result in the store (all with ``force``) and how many were
    skipped. A stored failed run is retried (its row is replaced); a diverged run is a result."""
    todo = [r for r in requests if force or not store.has_result(r.key)]
    return todo, len(requests) - len(todo)


def execute(requests: list[RunRequest], store: ResultsStore, device: str | None = None,
            workers: int = 1, force: bool = False,
            on_row: Callable[[RunRequest, dict, int, int], None] | None = None,
            progress_factory: Callable[[RunRequest], Any] | None = None, engine: str = "plain",
            executor: Executor | None = None, options: Any = None,
            max_retries: int = 2) -> tuple[list[dict], int]:
    """Run what the store lacks (all with ``force``); returns (new rows, number skipped).

    ``executor`` None: the local one, ``workers`` processes (one: a thread of this process).
    ``engine``: ``plain``, ``ensemble`` (``options``: its EngineOptions) or ``auto``
    (:func:`resolve_engine`). ``on_row(request,
    row, done, total)`` is called as each row lands; ``progress_factory(request)`` gives a
    progress object per job (the job's first request) where jobs run in this process. A job
    whose worker died is retried ``max_retries`` times, then its runs are ``failed`` rows.
    """
    todo, skipped = pending(requests, store, force)
    rows: list[dict] = []
    if not todo:
        return rows, skipped
    store.ensure_writable()
    engine = resolve_engine(engine, device)
    jobs = iter([RunsJob(group, engine, number=i, options=options)
                 for i, group in enumerate(job_groups(todo, engine))])

    def land(job: RunsJob, job_rows: list[dict]) -> None:
        for req, row in zip(job.requests, job_rows):
            store.write(req.key, row)
            rows.append(row)
            if on_row:
                on_row(req, row, len(rows), len(todo))

    def give_up(job: RunsJob, reason: str) -> None:
        dev = resolve_device(device)
        land(job, [make_row(r, None, dev, error=f"worker died: {reason}") for r in job.requests])

    own = executor is None
    if own:
        executor = make_executor("local", parallel=workers, in_process=workers <= 1, device=device)
    bars = None
    if progress_factory and not executor.isolated:  # a bar cannot follow a job elsewhere

        def bars(job: RunsJob):
            return progress_factory(job.requests[0])
    try:
        drive_jobs(executor, lambda: next(jobs, None), land, give_up, max_retries=max_retries,
                   progress_factory=bars)
    finally:
        if own:
            executor.close()
    return rows, skipped
