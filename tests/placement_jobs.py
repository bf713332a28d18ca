"""Jobs that record where they ran (for the GPU placement tests of test_multi_gpu.py).

Light on purpose: no torch, so a spawned worker or Ray task starts in a fraction of a second.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RecordJob:
    """Writes ``{number}.{attempt}.json`` under ``log`` (CUDA_VISIBLE_DEVICES, the device it was
    given, start and end times). ``kill_attempts``: attempts that SIGKILL their own worker right
    after recording. ``wait_for``: wait (up to 60 s) until that many jobs have started, so they
    are known to run at the same time. ``events``: in-process only, a dict number ->
    threading.Event the job waits on (the test decides when it ends). ``reports``: that many
    reports, one a second, before the end (what each report answered is recorded)."""

    number: int
    log: str
    seconds: float = 0.0
    kill_attempts: tuple = ()
    wait_for: int = 0
    attempt: int = 0
    reports: int = 0
    events: dict | None = field(default=None, repr=False, compare=False)

    @property
    def handle(self) -> str:
        return f"rec-{self.number}.{self.attempt}"

    def retry(self) -> "RecordJob":
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def run(self, report, device, progress=None) -> dict:
        ray = sys.modules.get("ray")  # imported where the job runs as a Ray task, not elsewhere
        ray_ids = [str(g) for g in ray.get_gpu_ids()] if ray and ray.is_initialized() else None
        record = {"number": self.number, "attempt": self.attempt, "device": device,
                  "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "ray_gpu_ids": ray_ids,
                  "pid": os.getpid(), "start": time.time()}
        path = Path(self.log) / f"{self.number}.{self.attempt}.json"
        path.write_text(json.dumps(record))
        if self.attempt in self.kill_attempts:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.wait_for:
            deadline = time.time() + 60
            while len(list(Path(self.log).glob("*.json"))) < self.wait_for and time.time() < deadline:
                time.sleep(0.05)
        if self.events is not None:
            self.events[self.number].wait(30)
        time.sleep(self.seconds)
        record["pruned"] = []
        for step in range(self.reports):
            time.sleep(1.0)
            record["pruned"].append(report(step, float(step)))
        record["end"] = time.time()
        path.write_text(json.dumps(record))
        return record
