"""Engines: how a grid's members are trained. One protocol, two engines, chosen by name here.

- ``plain``: one member at a time (a job is one run), through the trainer.
- ``ensemble``: every member of a grid at once, as one batched model (:mod:`mad_bench.train.ensemble`:
  vmapped model, flat AdamW, whole-step CUDA graphs); same results per run as ``plain``, whose
  trainer is the one-member case of the same step.
- ``auto``: ``ensemble`` on CUDA (3-5x the plain trainer's throughput on an H200:
  BENCHMARKS.md), ``plain`` elsewhere (a CPU gains nothing).

Both build every row with :func:`.rows.make_row`, so their results are interchangeable in the
store (a run done by one is skipped by the other). Neither raises for a run that fails: it
becomes a ``failed`` row. Engines are small picklable values: jobs carry them to workers.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from .options import ENGINES, check_choice
from .plan import Grid, RunRequest
from .rows import error_line, make_row

log = logging.getLogger("mad_bench.engine")

OnEval = Sequence[Callable | None] | None
"""One trainer-style callback ``(epoch, metrics) -> stop?`` (or None) per member."""


class Engine(Protocol):
    name: str

    def units(self, grid: Grid) -> list[Grid]:
        """The grid cut into what one job trains at once."""

    def rows(self, grid: Grid, device: str | None, *, progress=None, on_eval: OnEval = None) -> list[dict]:
        """Train the grid's members; their rows, in member order."""


def _callbacks(grid: Grid, on_eval: OnEval) -> list:
    return list(on_eval) if on_eval is not None else [None] * len(grid)


def train_one(req: RunRequest, device: str | None = None, progress=None, on_eval=None) -> dict[str, Any]:
    """Train one run through the trainer; its row (an exception becomes a ``failed`` row)."""
    from ..train.trainer import resolve_device, train

    dev = resolve_device(device)
    try:
        result = train(req.spec, req.setting.task_setting, req.training, device=str(dev),
                       progress=progress, on_eval=on_eval)
        return make_row(req, result, dev)
    except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad run
        return make_row(req, None, dev, error=error_line(exc))


@dataclass(frozen=True)
class PlainEngine:
    name = "plain"

    def units(self, grid: Grid) -> list[Grid]:
        return [grid.select([i]) for i in range(len(grid))]

    def rows(self, grid: Grid, device: str | None, *, progress=None, on_eval: OnEval = None) -> list[dict]:
        return [train_one(req, device, progress=progress, on_eval=cb)
                for req, cb in zip(grid, _callbacks(grid, on_eval))]


@dataclass(frozen=True)
class EnsembleEngine:
    """``options``: EngineOptions (None: the defaults). ``fallback_on_error``: a grid the
    engine fails on (logged, and noted in ``info``) is trained member by member through the
    trainer; without it its runs become ``failed`` rows."""

    options: Any = None
    fallback_on_error: bool = True
    name = "ensemble"

    def units(self, grid: Grid) -> list[Grid]:
        return [grid]

    def rows(self, grid: Grid, device: str | None, *, progress=None, on_eval: OnEval = None,
             info=None) -> list[dict]:
        """``info``: an EngineInfo to fill with what the engine did."""
        import torch

        from ..train.core import resolve_device
        from ..train.ensemble import EngineInfo, train_grid

        if not len(grid):
            return []
        dev = resolve_device(device)
        info = info if info is not None else EngineInfo()
        try:
            results = train_grid(grid.spec, grid.setting.task_setting, grid.members, device=dev,
                                 progress=progress, options=self.options, on_eval=on_eval, info=info)
            return [make_row(r, res, dev) for r, res in zip(grid, results)]
        except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad grid
            detail = error_line(exc)
            log.error("engine failed on %s: %s", grid.describe(), detail)
            log.debug("%s", traceback.format_exc())
            info.fallback_reason = f"engine error: {detail}"
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if not self.fallback_on_error:
                return [make_row(r, None, dev, error=detail) for r in grid]
            return PlainEngine().rows(grid, str(dev), on_eval=on_eval)


def make_engine(name: str, device: str | None = None, options: Any = None) -> Engine:
    """The engine called ``name`` (``auto`` resolved for ``device``); ``options``: the
    ensemble engine's EngineOptions."""
    check_choice("--engine", name, ENGINES)
    if name == "auto":
        from ..train.core import resolve_device

        name = "ensemble" if resolve_device(device).type == "cuda" else "plain"
    return EnsembleEngine(options) if name == "ensemble" else PlainEngine()
