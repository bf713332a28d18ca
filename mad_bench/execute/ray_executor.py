"""The Ray executor: each job is a plain Ray task (fractional CPUs / GPUs per task); the
driver keeps the state (the Optuna study, the results store).

With no address an embedded local Ray instance sized to the machine is started; with
``auto`` or ``HOST:PORT`` the driver joins an existing cluster (probed with a socket first, so
an unreachable address fails in seconds). Intermediate accuracies go through a small actor
(:class:`~mad_bench.execute.base.Broker`) that the driver drains for pruning decisions.
A task lost with its worker or node comes back as a ``died`` event for the driver to retry;
tasks end with their driver (Ray cancels a dead driver's tasks).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from .base import Broker, Executor

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0"}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'mad_bench[ray]' "
                         "(or use --executor local)") from None
    return ray


def probe_address(address: str, timeout: float = 3.0) -> str:
    """``auto`` or ``HOST:PORT`` -> a reachable ``HOST:PORT``; ValueError within seconds if not."""
    if address == "auto":
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        env = os.environ.get("RAY_ADDRESS")
        if env and env != "auto":
            address = env
        elif current.is_file() and current.read_text().strip():
            address = current.read_text().strip()
        else:
            raise ValueError("--address auto: no running Ray cluster found on this machine "
                             "(start one with `ray start --head`, or give HOST:PORT)")
    address = address.removeprefix("ray://") if address.startswith("ray://") else address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--address {address!r}: expected auto or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"--address {address}: cannot reach a Ray cluster there ({reason}); "
                         "is `ray start --head` running and the port open?") from None
    return address


def _ray_job(job, broker, device, threads):
    import ray
    import torch

    torch.set_num_threads(max(1, int(threads)))
    if device in (None, "auto"):
        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"

    def report(step, value):
        return ray.get(broker.report.remote(job.handle, step, value))

    return job.run(report, device)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, parallel: int | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, device: str | None = None):
        if cpus_per_trial <= 0:
            raise ValueError("--cpus-per-trial must be > 0")
        if gpus_per_trial < 0:
            raise ValueError("--gpus-per-trial must be >= 0")
        for k, v in RAY_ENV.items():
            os.environ.setdefault(k, v)
        target = probe_address(address) if address else None  # before importing/initialising Ray
        ray = _import_ray()
        self.ray = ray
        self._owns_ray = not ray.is_initialized()  # a caller's Ray instance is left running
        if self._owns_ray:
            if target:
                ray.init(address=target, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=100_000_000,
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        self.address = target or "embedded"
        self.cpus, self.gpus = cpus_per_trial, gpus_per_trial
        self.device = device
        resources = ray.cluster_resources()
        if gpus_per_trial > 0 and resources.get("GPU", 0) < gpus_per_trial:
            raise ValueError(f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has "
                             f"{resources.get('GPU', 0):g} GPU(s)")
        fits = int(resources.get("CPU", 1) // cpus_per_trial)
        if gpus_per_trial > 0:
            fits = min(fits, int(resources.get("GPU", 0) // gpus_per_trial))
        self.parallel = max(1, parallel or fits)
        self.broker = ray.remote(num_cpus=0)(Broker).remote()
        self._task = ray.remote(_ray_job)
        self._refs: dict = {}      # ObjectRef -> job
        self._by_handle: dict = {}

    def describe(self) -> str:
        return (f"ray ({self.address}, {self.parallel} at once, {self.cpus:g} CPU"
                f"{f' + {self.gpus:g} GPU' if self.gpus else ''} per job)")

    def capacity(self) -> int:
        return self.parallel

    def submit(self, job, progress=None) -> None:
        ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0,
                                 name=f"job-{job.handle}").remote(
            job, self.broker, self.device, max(1, self.cpus))
        self._refs[ref] = job
        self._by_handle[job.handle] = ref

    def events(self, timeout: float) -> list[tuple]:
        ray = self.ray
        out: list[tuple] = []
        if self._refs:
            done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
            if done:  # anything else finished too
                more, _ = ray.wait([r for r in self._refs if r not in done],
                                   num_returns=len(self._refs) - len(done), timeout=0)
                done = done + more
        else:
            done = []
        try:
            reports = ray.get(self.broker.drain.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - the broker is best effort; pruning can wait
            reports = []
        for handle, step, value in reports:
            ref = self._by_handle.get(handle)
            if ref is not None and ref in self._refs:
                out.append(("report", self._refs[ref], step, value))
        for ref in done:
            job = self._refs.pop(ref)
            self._by_handle.pop(job.handle, None)
            try:
                out.append(("done", job, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:
                out.append(("died", job, f"worker raised: {str(exc).strip().splitlines()[-1]}"))
            except ray.exceptions.RayError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append(("died", job, f"{type(exc).__name__}: {first}"[:300]))
        return out

    def prune(self, job) -> None:
        self.broker.prune.remote(job.handle)

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._refs.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
