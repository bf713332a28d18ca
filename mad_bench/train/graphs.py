"""Whole-step CUDA graph capture with an eager fallback.

A :class:`Program` wraps a zero-argument function that reads and writes only *static* tensors
(allocated once, updated in place: parameters, optimizer state, counters, metric buffers,
index buffers). On CUDA it is captured once into a ``torch.cuda.CUDAGraph`` following the
torch docs (warm-up iterations on a side stream, then ``torch.cuda.graph``), and each call
replays it: one host call per training step, no allocator or Python work in between.

Warm-up iterations really run the function (they train), so the static state they touch is
snapshotted before and restored after capture. If capture fails (an op that syncs with the
host, a data-dependent shape, a non-capturable kernel) the reason is logged, the state
restored, and the program runs eagerly: same results, just slower.
"""
from __future__ import annotations

import logging
import traceback
from typing import Callable, Sequence

import torch

log = logging.getLogger("mad_bench.engine")


class Program:
    def __init__(self, name: str, fn: Callable[[], None], device: torch.device,
                 state: Sequence[torch.Tensor], capture: bool, warmup: int = 3,
                 emulate: bool = False):
        """``emulate`` (tests, CPU): run the warm-up and state restore of a capture, no graph."""
        self.name, self.fn, self.device = name, fn, device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failure: str | None = None
        if capture and device.type == "cuda":
            self._capture(list(state), warmup)
        elif emulate:
            snapshot = [t.clone() for t in state]
            for _ in range(max(1, warmup)):
                self.fn()
                with torch.no_grad():
                    for t, s in zip(state, snapshot):
                        t.copy_(s)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def _capture(self, state: list[torch.Tensor], warmup: int) -> None:
        snapshot = [t.clone() for t in state]
        graph = torch.cuda.CUDAGraph()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(max(1, warmup)):
                    self.fn()
                    with torch.no_grad():  # e.g. batch counters stay in range
                        for t, s in zip(state, snapshot):
                            t.copy_(s)
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self.fn()
            torch.cuda.synchronize(self.device)
            self.graph = graph
        except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
            self.graph = None
            self.failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("CUDA graph capture of %s failed, running it eagerly (%s)", self.name,
                        self.failure)
            log.debug("capture traceback:\n%s", traceback.format_exc())
            try:
                torch.cuda.synchronize(self.device)
                del graph
                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - a poisoned stream reports here too
                pass
        finally:
            with torch.no_grad():
                for t, s in zip(state, snapshot):
                    t.copy_(s)
            del snapshot

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.fn()
