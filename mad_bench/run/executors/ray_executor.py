"""The Ray executor: each job is a plain Ray task (fractional CPUs / GPUs per task); the
driver keeps the state (the Optuna study, the results store).

With no address an embedded local Ray instance sized to the machine is started; with
``auto`` or ``HOST:PORT`` the driver joins an existing cluster (probed with a socket first, so
an unreachable address fails in seconds). Intermediate accuracies go through a small actor
(:class:`~mad_bench.run.executors.base.Broker`) that the driver drains for pruning decisions;
it lives on the driver's node (a worker node stopping must not take it along) and is best
effort: a report it does not answer is lost, never the job. A task lost with its worker or node
comes back as a ``died`` event for the driver to retry: from Ray, or, where Ray has not failed
it ``LOST_GRACE`` s after its node is gone, from the driver's own watch of the nodes that its
tasks said they run on. Tasks end with their driver (Ray cancels a dead driver's tasks).
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Broker, Executor

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0"}
REPORT_TIMEOUT = 10.0
"""Seconds a task waits for the broker to take a report before it goes on without it."""
LOST_GRACE = 10.0
"""Seconds after a task's node is seen gone before the task counts as died where Ray has not
failed it itself (Ray's own error, with its reason, usually comes first)."""
NODE_POLL = 2.0
"""Seconds between looks at which nodes are alive (while tasks run on known nodes)."""


@dataclass
class _Task:
    """What the driver knows of one submitted task."""
    job: Any
    token: int                # its submission number, until it says where it runs
    sent: float               # time.monotonic() at submission
    node: str | None = None   # the node it said it runs on


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


def job_device(device: str | None, gpu_ids: list) -> str | None:
    """The device a task trains on. Ray shows a task only its assigned GPUs
    (``CUDA_VISIBLE_DEVICES``), so an index given on the command line (``cuda:3``) would point
    past them: a task with GPUs trains on the first of its own."""
    if not gpu_ids:
        return device
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else device


def _ray_job(payload: bytes, token: int, broker, device, threads):
    """The task. The job comes pickled, so that the task says where it runs before unpickling
    it (which imports torch and the models: seconds on a loaded machine)."""
    import ray

    broker.started.remote(token, ray.get_runtime_context().get_node_id())
    job = ray.cloudpickle.loads(payload)
    if "torch" in sys.modules:  # imported with the job (every training job); others need no threads
        sys.modules["torch"].set_num_threads(max(1, int(threads)))

    def report(step, value):
        try:
            return ray.get(broker.report.remote(job.handle, step, value), timeout=REPORT_TIMEOUT)
        except ray.exceptions.RayError:  # the broker is gone or stuck: this report is lost, not the job
            return False

    return job.run(report, job_device(device, ray.get_gpu_ids()))


def spread_fraction(requested: float, parallel: int, total_gpus: int) -> float:
    """The GPU share each task asks Ray for. Ray fills one GPU with fractional tasks before the
    next, so ``parallel`` tasks of ``requested`` < 1 would crowd a few GPUs and leave others idle
    when they do not fill the cluster: the share grows to 1 / (tasks that must share a GPU)."""
    if not 0 < requested < 1 or total_gpus < 1:
        return requested
    return max(requested, 1 / math.ceil(parallel / total_gpus))


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, parallel: int | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, device: str | None = None,
                 jobs: int | None = None):
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
        self.cpus, self.device = cpus_per_trial, device
        resources = ray.cluster_resources()
        total = resources.get("GPU", 0)
        if gpus_per_trial > 0 and total < gpus_per_trial:
            raise ValueError(f"--gpus-per-trial {gpus_per_trial:g}: the Ray cluster has {total:g} GPU(s)")
        fits = int(resources.get("CPU", 1) // cpus_per_trial)
        if gpus_per_trial > 0:
            fits = min(fits, int(total // gpus_per_trial + 1e-6))
        self.parallel = max(1, parallel or fits)
        if parallel is None and jobs:  # no more slots than jobs: the spread below uses that
            self.parallel = max(1, min(self.parallel, jobs))
        self.requested = gpus_per_trial
        self.gpus_per_job = spread_fraction(gpus_per_trial, self.parallel, int(total))
        self.gpus = min(int(total), math.ceil(self.parallel * self.gpus_per_job - 1e-6))
        self._broker_class = ray.remote(Broker)
        self.broker = self._new_broker()
        self._task = ray.remote(_ray_job)
        self._tasks: dict = {}     # ObjectRef -> _Task
        self._by_handle: dict = {}  # job handle -> ObjectRef
        self._by_token: dict = {}  # submission token -> ObjectRef, until the task says its node
        self._gone: dict = {}      # node id -> when the driver first saw it gone
        self._alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}  # at the last look
        self._submitted = 0
        self._polled = 0.0

    def _new_broker(self):
        """A broker pinned to the driver's node (``soft=False``: never placed on a worker node
        that may stop), restarted in place should its process die (its reports are lost)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=False)
        return self._broker_class.options(num_cpus=0, max_restarts=-1, scheduling_strategy=here).remote()

    def describe(self) -> str:
        gpus = ""
        if self.gpus_per_job:
            gpus = f" + {self.gpus_per_job:.4g} GPU"
            if self.gpus_per_job != self.requested:
                gpus += f" (--gpus-per-trial {self.requested:g}, widened: fewer jobs at once than slots)"
        where = f" on {self.gpus} GPU(s)" if self.gpus else ""
        return f"ray ({self.address}, {self.parallel} at once{where}, {self.cpus:g} CPU{gpus} per job)"

    def capacity(self) -> int:
        return self.parallel

    def submit(self, job, progress=None) -> None:
        self._submitted += 1
        token = self._submitted
        ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus_per_job, max_retries=0,
                                 name=f"job-{job.handle}").remote(
            self.ray.cloudpickle.dumps(job), token, self.broker, self.device, max(1, self.cpus))
        self._tasks[ref] = _Task(job, token, time.monotonic())
        self._by_handle[job.handle] = ref
        self._by_token[token] = ref

    def _forget(self, ref):
        """Stop tracking ``ref``'s task; its job."""
        task = self._tasks.pop(ref)
        if self._by_handle.get(task.job.handle) == ref:
            del self._by_handle[task.job.handle]
        self._by_token.pop(task.token, None)
        return task.job

    def events(self, timeout: float) -> list[tuple]:
        ray = self.ray
        out: list[tuple] = []
        if self._tasks:
            done, _ = ray.wait(list(self._tasks), num_returns=1, timeout=timeout)
            if done:  # anything else finished too
                more, _ = ray.wait([r for r in self._tasks if r not in done],
                                   num_returns=len(self._tasks) - len(done), timeout=0)
                done = done + more
        else:
            done = []
        for handle, step, value in self._drain():
            ref = self._by_handle.get(handle)
            if ref is not None and ref in self._tasks:
                out.append(("report", self._tasks[ref].job, step, value))
        for ref in done:
            job = self._forget(ref)
            try:  # ready means fetched here: the timeout only guards against a stuck fetch
                out.append(("done", job, ray.get(ref, timeout=60)))
            except ray.exceptions.RayTaskError as exc:
                out.append(("died", job, f"worker raised: {str(exc).strip().splitlines()[-1]}"))
            except ray.exceptions.RayError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append(("died", job, f"{type(exc).__name__}: {first}"[:300]))
        return out + self._lost()

    def _drain(self) -> list[tuple[str, int, float]]:
        """The broker's reports, noting where tasks started; none when it does not answer (a
        dead broker is replaced for the jobs submitted from now on)."""
        ray = self.ray
        try:
            reports, started = ray.get(self.broker.drain.remote(), timeout=30)
        except ray.exceptions.ActorDiedError:
            self.broker = self._new_broker()
            return []
        except ray.exceptions.RayError:  # restarting or slow: pruning can wait
            return []
        for token, node in started:
            ref = self._by_token.pop(token, None)
            if ref is not None and ref in self._tasks:
                self._tasks[ref].node = node
        return reports

    def _lost(self) -> list[tuple]:
        """``died`` for each task whose node has been gone ``LOST_GRACE`` s while Ray has not
        failed the task (a task whose node stopped can otherwise stay pending for ever). A task
        submitted before a node went and not started ``LOST_GRACE`` s later may have been
        handed to that node: it is cancelled and submitted again (it did no work: no attempt)."""
        now = time.monotonic()
        if not self._tasks or now - self._polled < NODE_POLL:
            return []
        self._polled = now
        try:
            alive = {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}
        except Exception:  # noqa: BLE001 - the GCS is busy: look again at the next poll
            return []
        for node in self._alive - alive:
            self._gone.setdefault(node, now)
        self._alive = alive
        for ref in [r for r, t in self._tasks.items() if t.node is None]:
            went = [t for t in self._gone.values() if self._tasks[ref].sent < t <= now - LOST_GRACE]
            if went:
                job = self._forget(ref)
                self._cancel(ref)
                self.submit(job)
        out = []
        for ref, node in [(r, t.node) for r, t in self._tasks.items() if t.node is not None]:
            if node in alive:
                continue
            since = self._gone.setdefault(node, now)
            if now - since < LOST_GRACE:
                continue
            job = self._forget(ref)
            self._cancel(ref)
            out.append(("died", job, f"node {node[:12]} is gone and Ray had not ended the task "
                                     f"{now - since:.0f} s later"))
        return out

    def _cancel(self, ref) -> None:
        try:
            self.ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - its worker is gone with the node anyway
            pass

    def prune(self, job) -> None:
        self.broker.prune.remote(job.handle)

    def close(self) -> None:
        for ref in list(self._tasks):
            self._cancel(ref)
        self._tasks.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
