"""The local executor: no Ray. Jobs run in spawned worker processes (a killed worker is
detected and reported as ``died``; a worker ends itself when the driver dies) or, with
``in_process``, in threads of the driver (which can show per-job progress bars)."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from multiprocessing.connection import wait as mp_wait

from .base import Broker, Executor


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the driver died: do not keep training orphaned
            os._exit(3)


def _child(job_bytes: bytes, conn, device, threads, parent) -> None:
    # the watch starts before the job is unpickled (which imports torch and the models: seconds
    # on a loaded machine), so a driver killed meanwhile does not leave this worker behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch

    job = pickle.loads(job_bytes)
    torch.set_num_threads(threads)
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
                 device: str | None = None, gpus_per_trial: float = 0.0):
        cpus = os.cpu_count() or 1
        self.parallel = max(1, parallel or (1 if in_process else max(1, cpus // 2)))
        self.in_process = in_process
        self.isolated = not in_process
        self.device = device
        self.threads = max(1, cpus // self.parallel)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[str, tuple] = {}     # handle -> (job, process, conn)
        self._events: queue.Queue = queue.Queue()
        self._broker = Broker()

    def describe(self) -> str:
        mode = "threads" if self.in_process else "processes"
        return f"local ({self.parallel} {mode})"

    def capacity(self) -> int:
        return self.parallel

    def submit(self, job, progress=None) -> None:
        if self.in_process:
            threading.Thread(target=self._thread, args=(job, progress), daemon=True).start()
            return
        parent_conn, child_conn = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, daemon=True,
                                 args=(pickle.dumps(job), child_conn, self.device, self.threads,
                                       os.getpid()))
        proc.start()
        child_conn.close()
        self._procs[job.handle] = (job, proc, parent_conn)

    def _thread(self, job, progress) -> None:
        handle = job.handle

        def report(step, value):
            self._events.put(("report", job, step, value))
            return self._broker.should_stop(handle)

        try:
            self._events.put(("done", job, job.run(report, self.device, progress)))
        except BaseException as exc:  # noqa: BLE001
            self._events.put(("died", job, f"worker raised {exc!r}"))

    def events(self, timeout: float) -> list[tuple]:
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
        for _, proc, _ in procs:
            if proc.is_alive():
                proc.terminate()
        for _, proc, conn in procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            conn.close()
