"""The one place that runs jobs: ``bench`` / ``run`` (:func:`mad_bench.runner.execute`),
``tune`` and ``search`` (:func:`mad_bench.tune.study.drive`) all hand their jobs to an
executor and drive it with :func:`.loop.drive_jobs`.

- ``local`` (default): no Ray; each job in its own spawned process, or in a thread of the
  driver (``in_process=True``, what one worker means); on several GPUs each worker is pinned
  to one of them (:mod:`.gpus`), ``jobs_per_gpu`` at most on one.
- ``ray``: each job a plain Ray task on an embedded local instance or an existing cluster
  (``address``), with fractional CPUs / GPUs per job.

A job is picklable work (:class:`.base.Job`): planned runs through the plain trainer or the
ensemble engine (:class:`.jobs.RunsJob`), or a search trial. Executors report the same events
to the driver: ``("report", job, step, value)`` (an intermediate value, for pruning),
``("done", job, result)`` and ``("died", job, reason)`` (the driver retries or gives up).
"""
from __future__ import annotations

import dataclasses
import os

from .base import Executor, Job  # noqa: F401

EXECUTORS = ("local", "ray")


def make_executor(kind: str, *, parallel: int | None = None, in_process: bool | None = False,
                  address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, device: str | None = None,
                  jobs_per_gpu: int | None = None, jobs: int | None = None) -> Executor:
    """``parallel`` None: one worker per GPU slot (``jobs_per_gpu``, default 1, per GPU) where
    jobs train on GPUs; elsewhere local: one thread (``in_process`` None or True) or half the
    cores' processes (False), Ray: what fits. ``in_process`` None: a thread of the driver when
    there is one worker, processes otherwise. ``jobs``: how many jobs there are, where known
    (no more workers than jobs; Ray spreads fewer jobs than slots over more GPUs)."""
    if address and kind != "ray":
        raise ValueError("--address needs --executor ray")
    if parallel is not None and parallel < 1:
        raise ValueError(f"--workers / --parallel: {parallel} is not valid (valid: 1 or more)")
    if jobs_per_gpu is not None:
        if jobs_per_gpu < 1:
            raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: not valid (valid: 1 or more)")
        if gpus_per_trial and abs(gpus_per_trial * jobs_per_gpu - 1) > 1e-6:
            raise ValueError(f"--jobs-per-gpu {jobs_per_gpu} and --gpus-per-trial {gpus_per_trial:g} "
                             "disagree (give one: K jobs per GPU is 1/K GPU per job)")
    if gpus_per_trial < 0:
        raise ValueError(f"--gpus-per-trial {gpus_per_trial:g}: not valid (valid: 0 or more)")
    if kind == "local":
        from .gpus import plan_local
        from .local import LocalExecutor

        if gpus_per_trial > 1:
            raise ValueError(f"--gpus-per-trial {gpus_per_trial:g}: a local worker uses one GPU "
                             "(valid with --executor local: 0 .. 1; several GPUs per job need Ray)")
        if gpus_per_trial and jobs_per_gpu is None:
            jobs_per_gpu = max(1, int(1 / gpus_per_trial + 1e-6))
        default = 1 if in_process is not False else max(1, (os.cpu_count() or 1) // 2)
        plan = plan_local(device, parallel, jobs_per_gpu, default)
        if parallel is None and jobs and jobs < plan.workers:  # one job (`run`): in this process
            plan = dataclasses.replace(plan, workers=jobs)
        threads = plan.workers == 1 if in_process is None else in_process
        return LocalExecutor(parallel=plan.workers, in_process=threads, device=device, plan=plan)
    if kind == "ray":
        from .ray_executor import RayExecutor

        if jobs_per_gpu is not None:
            if device in ("cpu", "mps"):
                raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: needs a CUDA device, not --device "
                                 f"{device} (valid: --device cuda or auto)")
            gpus_per_trial = 1 / jobs_per_gpu
        return RayExecutor(address=address, parallel=parallel, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial, device=device, jobs=jobs)
    raise ValueError(f"--executor: unknown executor {kind!r} (valid: {', '.join(EXECUTORS)})")
