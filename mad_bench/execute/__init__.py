"""Executors run trials (:class:`mad_bench.tune.worker.TrialJob`) for the driver's study.

- ``local``: no Ray; each trial in its own spawned process (default) or in a thread of the
  driver (``in_process=True``).
- ``ray``: each trial a plain Ray task on an embedded local instance or an existing cluster.

All report the same events to the driver: ``("report", job, step, value)`` (an intermediate
accuracy, for the pruner), ``("done", job, outcome)`` and ``("died", job, reason)`` (the worker
process or node died; the driver retries or fails the trial).
"""
from __future__ import annotations

from .base import Executor  # noqa: F401


def make_executor(kind: str, *, parallel: int | None = None, in_process: bool = False,
                  address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, device: str | None = None) -> Executor:
    if kind == "local":
        from .local import LocalExecutor
        return LocalExecutor(parallel=parallel, in_process=in_process, device=device,
                             gpus_per_trial=gpus_per_trial)
    if kind == "ray":
        from .ray_executor import RayExecutor
        return RayExecutor(address=address, parallel=parallel, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, device=device)
    raise ValueError(f"--executor: unknown executor {kind!r} (valid: local, ray)")
