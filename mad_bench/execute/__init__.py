"""The one place that runs jobs: ``bench`` / ``run`` (:func:`mad_bench.runner.execute`),
``tune`` and ``search`` (:func:`mad_bench.tune.study.drive`) all hand their jobs to an
executor and drive it with :func:`.loop.drive_jobs`.

- ``local`` (default): no Ray; each job in its own spawned process, or in a thread of the
  driver (``in_process=True``, what one worker means).
- ``ray``: each job a plain Ray task on an embedded local instance or an existing cluster
  (``address``), with fractional CPUs / GPUs per job.

A job is picklable work (:class:`.base.Job`): planned runs through the plain trainer or the
ensemble engine (:class:`.jobs.RunsJob`), or a search trial. Executors report the same events
to the driver: ``("report", job, step, value)`` (an intermediate value, for pruning),
``("done", job, result)`` and ``("died", job, reason)`` (the driver retries or gives up).
"""
from __future__ import annotations

from .base import Executor, Job  # noqa: F401

EXECUTORS = ("local", "ray")


def make_executor(kind: str, *, parallel: int | None = None, in_process: bool = False,
                  address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, device: str | None = None) -> Executor:
    if address and kind != "ray":
        raise ValueError("--address needs --executor ray")
    if parallel is not None and parallel < 1:
        raise ValueError(f"--workers / --parallel: {parallel} is not valid (valid: 1 or more)")
    if kind == "local":
        from .local import LocalExecutor
        return LocalExecutor(parallel=parallel, in_process=in_process, device=device,
                             gpus_per_trial=gpus_per_trial)
    if kind == "ray":
        from .ray_executor import RayExecutor
        return RayExecutor(address=address, parallel=parallel, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, device=device)
    raise ValueError(f"--executor: unknown executor {kind!r} (valid: {', '.join(EXECUTORS)})")
