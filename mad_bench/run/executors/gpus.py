"""Which GPUs local workers use and how many workers each holds.

The count is read without creating a CUDA context in the driver (``torch.cuda.device_count``;
workers are spawned, so the driver's CUDA state never reaches them). A worker is pinned to one
GPU through ``CUDA_VISIBLE_DEVICES`` in its own environment, set before anything in it touches
CUDA; ids follow the driver's own ``CUDA_VISIBLE_DEVICES`` when it has one (so ``2,5`` pins
workers to physical GPUs 2 and 5, and UUIDs work too).

``MADBENCH_FAKE_GPUS=N`` makes the executors plan for N GPUs (ids ``0 .. N-1``) on any
machine: for tests of the placement on a CPU. Training still uses the real device.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

FAKE_ENV = "MADBENCH_FAKE_GPUS"


def visible_gpus() -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` id of every GPU this process may use, in CUDA's order."""
    fake = os.environ.get(FAKE_ENV)
    if fake is not None:
        if not fake.strip().isdigit():
            raise ValueError(f"{FAKE_ENV}={fake!r} is not a GPU count (valid: 0 or more)")
        return [str(i) for i in range(int(fake))]
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [x.strip() for x in env.split(",") if x.strip()] if env else []
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


@dataclass(frozen=True)
class GpuPlan:
    """Local workers over GPUs: ``ids[i]`` is what a worker on GPU slot ``i`` gets as
    ``CUDA_VISIBLE_DEVICES``; ``indices[i]`` the same GPU as the driver numbers it (for jobs
    in threads of the driver, which cannot change their environment); at most ``per_gpu``
    workers on one GPU. No ids: workers are not pinned (CPU, MPS)."""

    ids: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    per_gpu: int = 1
    workers: int = 1
    seen: int = 0          # GPUs visible to the driver

    def describe(self) -> str:
        """``on 3 of 3 GPU(s) seen (0, 1, 2), 2 per GPU``; empty when not pinned."""
        if not self.ids:
            return ""
        full = self.workers >= len(self.ids) * self.per_gpu
        return (f"on {len(self.ids)} of {self.seen} GPU(s) seen ({', '.join(self.ids)}), "
                f"{'' if full else 'at most '}{self.per_gpu} per GPU")


def _uses_gpus(device: str | None, gpus: list[str]) -> bool:
    if device in (None, "auto"):
        return bool(gpus)
    return device.startswith("cuda")


def plan_local(device: str | None, workers: int | None, jobs_per_gpu: int | None,
               default_workers: int, gpus: list[str] | None = None) -> GpuPlan:
    """Workers and their GPUs for the local executor. ``workers`` None: ``jobs_per_gpu`` (1)
    per GPU on a GPU device, else ``default_workers``. ``gpus``: the visible ids (default:
    :func:`visible_gpus`, read only where a GPU may be used)."""
    if jobs_per_gpu is not None and jobs_per_gpu < 1:
        raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: not valid (valid: 1 or more)")
    if device in ("cpu", "mps"):
        if jobs_per_gpu is not None:
            raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: needs a CUDA device, not --device "
                             f"{device} (valid: --device cuda, or auto on a machine with GPUs)")
        return GpuPlan(workers=workers or default_workers)
    if gpus is None:
        gpus = visible_gpus()
    if not _uses_gpus(device, gpus):
        if jobs_per_gpu is not None:
            raise ValueError(f"--jobs-per-gpu {jobs_per_gpu}: no GPU seen on this machine "
                             "(valid only where CUDA GPUs are visible)")
        return GpuPlan(workers=workers or default_workers)
    if not gpus:
        raise ValueError(f"--device {device}: no CUDA GPU seen on this machine (valid here: auto, cpu)")
    match = re.fullmatch(r"cuda:(\d+)", device or "")
    indices = [int(match.group(1))] if match else list(range(len(gpus)))
    if indices[-1] >= len(gpus):
        raise ValueError(f"--device {device}: {len(gpus)} GPU(s) seen (valid: cuda:0 .. "
                         f"cuda:{len(gpus) - 1})")
    n = len(indices)
    if jobs_per_gpu is not None:
        per_gpu = jobs_per_gpu
        if workers is not None and workers > n * per_gpu:
            raise ValueError(f"--workers {workers}: {n} GPU(s) x --jobs-per-gpu {per_gpu} hold "
                             f"{n * per_gpu} worker(s) (valid: 1 .. {n * per_gpu}, or leave "
                             "--workers out)")
    else:
        per_gpu = math.ceil(workers / n) if workers else 1
    return GpuPlan(ids=tuple(gpus[i] for i in indices), indices=tuple(indices), per_gpu=per_gpu,
                   workers=workers or n * per_gpu, seen=len(gpus))
