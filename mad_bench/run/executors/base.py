"""The executor interface, what a job is, and the prune-decision mailbox shared by executors.

A job is a picklable unit of work with a ``handle`` (unique among running jobs), an
``attempt`` count, ``retry()`` (the same work, next attempt) and
``run(report, device, progress=None)``, which does the work on the worker and returns what
goes back to the driver. ``report(step, value) -> bool`` sends an intermediate value to the
driver and says whether the driver asked the job to stop; ``progress`` is a per-job progress
object, given only where the job runs in the driver's process.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

# (step, value) -> True when the driver has decided to stop (prune) the job
Reporter = Callable[[int, float], bool]


class Job(Protocol):
    attempt: int

    @property
    def handle(self) -> str: ...

    def retry(self) -> "Job": ...

    def run(self, report: Reporter, device: str | None, progress=None) -> Any: ...


class Executor:
    """Runs jobs and reports, through ``events``: ``("report", job, step, value)``,
    ``("done", job, result)`` and ``("died", job, reason)`` (the job raised, or its worker
    process or node died; the driver retries or gives up)."""

    name = "executor"
    isolated = True
    """Whether each job runs in a process of its own (False: threads of the driver)."""
    gpus = 0
    """GPUs the jobs spread over (0: none, or not known)."""

    def capacity(self) -> int:
        """How many jobs should run at once."""
        raise NotImplementedError

    def submit(self, job: Job, progress=None) -> None:
        """Start ``job``; ``progress`` reaches it only where it runs in the driver's process."""
        raise NotImplementedError

    def events(self, timeout: float) -> list[tuple]:
        """Events since the last call, waiting up to ``timeout`` s for the first."""
        raise NotImplementedError

    def prune(self, job: Job) -> None:
        """Ask the running job to stop at its next report."""
        raise NotImplementedError

    def retrying(self, old: Job, new: Job) -> None:
        """``new`` (``old.retry()``) is about to be submitted because ``old``'s worker died:
        where the executor places jobs itself, it places ``new`` elsewhere."""

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Broker:
    """Reports from workers and prune decisions from the driver (a plain object locally, a
    Ray actor on a cluster). Keys are job handles."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reports: list[tuple[str, int, float]] = []
        self._started: list[tuple[int, str]] = []
        self._pruned: set[str] = set()

    def report(self, handle: str, step: int, value: float) -> bool:
        with self._lock:
            self._reports.append((handle, step, value))
            return handle in self._pruned

    def started(self, token: int, node: str) -> None:
        """A task (``token``: its submission) began on ``node``: the driver watches that node."""
        with self._lock:
            self._started.append((token, node))

    def should_stop(self, handle: str) -> bool:
        with self._lock:
            return handle in self._pruned

    def drain(self) -> tuple[list[tuple[str, int, float]], list[tuple[int, str]]]:
        """Reports and task starts since the last drain."""
        with self._lock:
            out = self._reports, self._started
            self._reports, self._started = [], []
            return out

    def prune(self, handle: str) -> None:
        with self._lock:
            self._pruned.add(handle)

    def ping(self) -> Any:
        return True
