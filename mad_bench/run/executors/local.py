"""The local executor: no Ray. Jobs run in spawned worker processes (a killed worker is
detected and reported as ``died``; a worker ends itself when the driver dies) or, with
``in_process``, in threads of the driver (which can show per-job progress bars).

On GPUs (:mod:`.gpus`) each job goes to the least-loaded GPU with a free slot (at most
``per_gpu`` jobs on one GPU); a worker process sees only its GPU (``CUDA_VISIBLE_DEVICES``),
a thread gets ``cuda:N``. A job whose worker died is retried on a GPU it has not died on yet,
waiting for a slot there rather than crowding a GPU past ``per_gpu``."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from multiprocessing.connection import wait as mp_wait

from .base import Broker, Executor
from .gpus import GpuPlan


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the driver died: do not keep training orphaned
            os._exit(3)


def _child(job_bytes: bytes, conn, device, threads, parent, gpu: str | None = None) -> None:
    # before anything here touches CUDA: this worker sees its one GPU, as device 0
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    # the watch starts before the job is unpickled (which imports torch and the models: seconds
    # on a loaded machine), so a driver killed meanwhile does not leave this worker behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # for a torch the job imports later
    job = pickle.loads(job_bytes)
    if "torch" in sys.modules:  # every training job imports it; a job that does not needs no threads
        sys.modules["torch"].set_num_threads(threads)
    pruned = False

    def report(step: int, value: float) -> bool:
        nonlocal pruned
        conn.send(("report", step, value))
        while conn.poll():
            if conn.recv() == "prune":
                pruned = True
        return pruned

    try:
        outcome = job.run(report, device)
    except BaseException as exc:  # noqa: BLE001 - becomes a 'died' event with the reason
        import traceback
        conn.send(("error", "".join(traceback.format_exception_only(type(exc), exc)).strip()))
        return
    conn.send(("done", outcome))


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, parallel: int | None = None, in_process: bool = False,
                 device: str | None = None, gpus_per_trial: float = 0.0, plan: GpuPlan | None = None):
        cpus = os.cpu_count() or 1
        self.plan = plan or GpuPlan()
        self.parallel = max(1, parallel or (self.plan.workers if plan else
                                            (1 if in_process else max(1, cpus // 2))))
        self.in_process = in_process
        self.isolated = not in_process
        self.device = device
        self.threads = max(1, cpus // self.parallel)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[str, tuple] = {}     # handle -> (job, process, conn)
        self._events: queue.Queue = queue.Queue()
        self._broker = Broker()
        self.gpus = len(self.plan.ids)
        self._load = [0] * self.gpus           # running jobs per GPU slot
        self._placed: dict[str, int] = {}      # handle -> GPU slot, until done or retried
        self._avoid: dict[str, set[int]] = {}  # handle of a retry -> GPU slots it died on
        self._waiting: list[tuple] = []        # (job, progress) submitted, no slot for them yet

    def describe(self) -> str:
        mode = "threads" if self.in_process else "processes"
        where = self.plan.describe()
        return f"local ({self.parallel} {mode}{' ' + where if where else ''})"

    def capacity(self) -> int:
        return self.parallel

    def retrying(self, old, new) -> None:
        if old.handle in self._placed:
            self._avoid[new.handle] = self._avoid.pop(old.handle, set()) | {self._placed.pop(old.handle)}

    def _pick(self, handle: str) -> int | None:
        """The least-loaded GPU slot with room, not one the job died on (unless it died on all)."""
        open_ = [g for g in range(len(self._load)) if self._load[g] < self.plan.per_gpu]
        avoid = self._avoid.get(handle, set())
        allowed = [g for g in open_ if g not in avoid]
        if not allowed and len(avoid) >= len(self._load):
            allowed = open_
        return min(allowed, key=lambda g: (self._load[g], g)) if allowed else None

    def _release(self, job, died: bool) -> None:
        g = self._placed.get(job.handle)
        if g is not None:
            self._load[g] -= 1
            if not died:  # a died job's slot is kept for retrying()
                self._placed.pop(job.handle)
                self._avoid.pop(job.handle, None)
        self._start_waiting()

    def _start_waiting(self) -> None:
        for entry in list(self._waiting):
            g = self._pick(entry[0].handle)
            if g is not None:
                self._waiting.remove(entry)
                self._start(*entry, g)

    def submit(self, job, progress=None) -> None:
        if not self._load:
            self._start(job, progress, None)
            return
        self._waiting.append((job, progress))
        self._start_waiting()

    def _start(self, job, progress, g: int | None) -> None:
        device, gpu = self.device, None
        if g is not None:
            self._load[g] += 1
            self._placed[job.handle] = g
            if self.in_process:  # threads share the driver's view: an index, where there is a choice
                device = f"cuda:{self.plan.indices[g]}" if len(self._load) > 1 else device
            else:
                gpu = self.plan.ids[g]
                device = "cuda" if (device or "").startswith("cuda") else device
        if self.in_process:
            threading.Thread(target=self._thread, args=(job, progress, device), daemon=True).start()
            return
        parent_conn, child_conn = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, daemon=True,
                                 args=(pickle.dumps(job), child_conn, device, self.threads,
                                       os.getpid(), gpu))
        proc.start()
        child_conn.close()
        self._procs[job.handle] = (job, proc, parent_conn)

    def _thread(self, job, progress, device) -> None:
        handle = job.handle

        def report(step, value):
            self._events.put(("report", job, step, value))
            return self._broker.should_stop(handle)

        try:
            self._events.put(("done", job, job.run(report, device, progress)))
        except BaseException as exc:  # noqa: BLE001
            self._events.put(("died", job, f"worker raised {exc!r}"))

    def events(self, timeout: float) -> list[tuple]:
        out = self._collect(timeout)
        for event in out:
            if event[0] in ("done", "died"):
                self._release(event[1], died=event[0] == "died")
        return out

    def _collect(self, timeout: float) -> list[tuple]:
        out: list[tuple] = []
        if self.in_process:
            try:
                out.append(self._events.get(timeout=timeout))
                while True:
                    out.append(self._events.get_nowait())
            except queue.Empty:
                return out
        if not self._procs:
            time.sleep(min(timeout, 0.05))
            return out
        conns = {conn: h for h, (_, _, conn) in self._procs.items()}
        ready = mp_wait(list(conns), timeout=timeout)
        for conn in ready:
            handle = conns[conn]
            job, proc, _ = self._procs[handle]
            finished = False
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "report":
                        out.append(("report", job, msg[1], msg[2]))
                    elif msg[0] == "done":
                        out.append(("done", job, msg[1]))
                        finished = True
                    elif msg[0] == "error":
                        out.append(("died", job, f"worker raised: {msg[1]}"))
                        finished = True
            except (EOFError, OSError):
                proc.join(timeout=5)
                code = proc.exitcode
                why = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit code {code}")
                out.append(("died", job, f"worker process {proc.pid} died ({why})"))
                finished = True
            if finished:
                conn.close()
                proc.join(timeout=5)
                self._procs.pop(handle, None)
        return out

    def prune(self, job) -> None:
        if self.in_process:
            self._broker.prune(job.handle)
            return
        entry = self._procs.get(job.handle)
        if entry:
            try:
                entry[2].send("prune")
            except OSError:
                pass

    def close(self) -> None:
        """Stop the workers still running (the driver is done or was interrupted): SIGTERM,
        then SIGKILL for one that has not ended within 2 s; every one is joined."""
        procs = list(self._procs.values())
        self._procs.clear()
        self._waiting.clear()
        for _, proc, _ in procs:
            if proc.is_alive():
                proc.terminate()
        for _, proc, conn in procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            conn.close()
