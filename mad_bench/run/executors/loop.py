"""The driver's loop over an executor: keep it full, hand events to the caller, retry jobs
whose worker died. ``run.driver.execute`` (bench / run) and ``tune.study.drive`` (tune /
search) both run their jobs through :func:`drive_jobs`."""
from __future__ import annotations

import time
from typing import Any, Callable

from .base import Executor, Job


def drive_jobs(executor: Executor, next_job: Callable[[], Job | None],
               on_done: Callable[[Job, Any], None], on_failed: Callable[[Job, str], None], *,
               on_report: Callable[[Job, int, float], None] | None = None,
               on_retry: Callable[[Job, str], None] | None = None, max_retries: int = 2,
               progress_factory: Callable[[Job], Any] | None = None, poll: float = 0.5,
               retry_delay: float = 1.0) -> None:
    """Run jobs until ``next_job()`` returns None and every started job has finished.

    ``on_done(job, result)`` as each job lands; a job whose worker died is submitted again
    (``job.retry()``, after ``on_retry(new_job, reason)``) up to ``max_retries`` times, then
    ``on_failed(job, reason)``. ``on_report(job, step, value)`` gets intermediate values.
    A retry waits ``retry_delay`` s times its attempt (its slot kept), so that it does not run
    straight into what killed the last one (a node still being taken out of the cluster).
    """
    running: dict[str, Job] = {}
    held: list[tuple[float, Job]] = []  # (when to submit, retry)
    exhausted = False

    def submit(job: Job) -> None:
        running[job.handle] = job
        executor.submit(job, progress=progress_factory(job) if progress_factory else None)

    while True:
        now = time.monotonic()
        for entry in [e for e in held if e[0] <= now]:
            held.remove(entry)
            submit(entry[1])
        while not exhausted and len(running) + len(held) < executor.capacity():
            job = next_job()
            if job is None:
                exhausted = True
            else:
                submit(job)
        if not running:
            if not held:
                return
            time.sleep(max(0.0, min(t for t, _ in held) - now))
            continue
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
                held.append((time.monotonic() + retry_delay * again.attempt, again))
            else:
                on_failed(job, event[2])
