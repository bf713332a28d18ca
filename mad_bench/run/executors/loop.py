"""The driver's loop over an executor: keep it full, hand events to the caller, retry jobs
whose worker died. ``run.driver.execute`` (bench / run) and ``tune.study.drive`` (tune /
search) both run their jobs through :func:`drive_jobs`."""
from __future__ import annotations

from typing import Any, Callable

from .base import Executor, Job


def drive_jobs(executor: Executor, next_job: Callable[[], Job | None],
               on_done: Callable[[Job, Any], None], on_failed: Callable[[Job, str], None], *,
               on_report: Callable[[Job, int, float], None] | None = None,
               on_retry: Callable[[Job, str], None] | None = None, max_retries: int = 2,
               progress_factory: Callable[[Job], Any] | None = None, poll: float = 0.5) -> None:
    """Run jobs until ``next_job()`` returns None and every started job has finished.

    ``on_done(job, result)`` as each job lands; a job whose worker died is submitted again
    (``job.retry()``, after ``on_retry(new_job, reason)``) up to ``max_retries`` times, then
    ``on_failed(job, reason)``. ``on_report(job, step, value)`` gets intermediate values.
    """
    running: dict[str, Job] = {}
    exhausted = False

    def submit(job: Job) -> None:
        running[job.handle] = job
        executor.submit(job, progress=progress_factory(job) if progress_factory else None)

    while True:
        while not exhausted and len(running) < executor.capacity():
            job = next_job()
            if job is None:
                exhausted = True
            else:
                submit(job)
        if not running:
            return
        for event in executor.events(poll):
            kind, job = event[0], event[1]
            if running.get(job.handle) is not job:
                continue
            if kind == "report":
                if on_report:
                    on_report(job, event[2], event[3])
                continue
            running.pop(job.handle)
            if kind == "done":
                on_done(job, event[2])
            elif job.attempt < max_retries:
                again = job.retry()
                executor.retrying(job, again)
                if on_retry:
                    on_retry(again, event[2])
                submit(again)
            else:
                on_failed(job, event[2])
