"""The executor interface and the prune-decision mailbox shared by executors."""
from __future__ import annotations

import threading
from typing import Any


class Executor:
    name = "executor"

    def capacity(self) -> int:
        """How many trials should run at once."""
        raise NotImplementedError

    def submit(self, job) -> None:
        raise NotImplementedError

    def events(self, timeout: float) -> list[tuple]:
        """Events since the last call, waiting up to ``timeout`` s for the first."""
        raise NotImplementedError

    def prune(self, job) -> None:
        """Ask the running trial to stop at its next evaluation."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Broker:
    """Reports from workers and prune decisions from the driver (a plain object locally, a
    Ray actor on a cluster). Keys are job handles ``"<trial>.<attempt>"``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reports: list[tuple[str, int, float]] = []
        self._pruned: set[str] = set()

    def report(self, handle: str, step: int, value: float) -> bool:
        with self._lock:
            self._reports.append((handle, step, value))
            return handle in self._pruned

    def should_stop(self, handle: str) -> bool:
        with self._lock:
            return handle in self._pruned

    def drain(self) -> list[tuple[str, int, float]]:
        with self._lock:
            out, self._reports = self._reports, []
            return out

    def prune(self, handle: str) -> None:
        with self._lock:
            self._pruned.add(handle)

    def ping(self) -> Any:
        return True
