"""Executors: where jobs run. ``bench`` / ``run`` (:func:`mad_bench.run.driver.execute`),
``tune`` and ``search`` (:func:`mad_bench.tune.study.drive`) all hand their jobs to an
executor made by :func:`make_executor` and drive it with :func:`.loop.drive_jobs`.

- ``local`` (default): no Ray; each job in its own spawned process, or in a thread of the
  driver (``in_process``, what one worker means); on several GPUs each worker is pinned
  to one of them (:mod:`.gpus`), ``jobs_per_gpu`` at most on one.
- ``ray``: each job a plain Ray task on an embedded local instance or an existing cluster
  (``address``), with fractional CPUs / GPUs per job.

A job is picklable work (:class:`.base.Job`): a grid through an engine
(:class:`mad_bench.run.jobs.GridJob`), or a search trial. Executors report the same events
to the driver: ``("report", job, step, value)`` (an intermediate value, for pruning),
``("done", job, result)`` and ``("died", job, reason)`` (the driver retries or gives up).
"""
from __future__ import annotations

import dataclasses
import os

from ..options import ExecOptions
from .base import Executor, Job  # noqa: F401


def make_executor(options: ExecOptions, jobs: int | None = None) -> Executor:
    """The executor ``options`` ask for. Workers (``options.workers`` None): one per GPU slot
    (``jobs_per_gpu``, default 1, per GPU) where jobs train on GPUs; elsewhere local: one
    thread (``in_process`` None or True) or half the cores' processes (False), Ray: what fits.
    ``jobs``: how many jobs there are, where known (no more workers than jobs; Ray spreads
    fewer jobs than slots over more GPUs)."""
    o = options
    parallel, jobs_per_gpu, gpus = o.workers, o.jobs_per_gpu, o.gpus_per_job
    if o.executor_kind == "local":
        from .gpus import plan_local
        from .local import LocalExecutor

        if gpus > 1:
            raise ValueError(f"--gpus-per-trial {gpus:g}: a local worker uses one GPU "
                             "(valid with --executor local: 0 .. 1; several GPUs per job need Ray)")
        if gpus and jobs_per_gpu is None:
            jobs_per_gpu = max(1, int(1 / gpus + 1e-6))
        default = 1 if o.in_process is not False else max(1, (os.cpu_count() or 1) // 2)
        plan = plan_local(o.device, parallel, jobs_per_gpu, default)
        if parallel is None and jobs and jobs < plan.workers:  # one job (`run`): in this process
            plan = dataclasses.replace(plan, workers=jobs)
        threads = plan.workers == 1 if o.in_process is None else o.in_process
        return LocalExecutor(parallel=plan.workers, in_process=threads, device=o.device, plan=plan)
    from .ray_executor import RayExecutor

    if jobs_per_gpu is not None:
        if o.device in ("cpu", "mps"):
            raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: needs a CUDA device, not --device "
                             f"{o.device} (valid: --device cuda or auto)")
        gpus = 1 / jobs_per_gpu
    return RayExecutor(address=o.address, parallel=parallel, cpus_per_trial=o.cpus_per_job,
                       gpus_per_trial=gpus, device=o.device, jobs=jobs)
