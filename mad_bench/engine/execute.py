"""Run planned RunRequests through the ensemble engine, writing the plain runner's rows.

Requests that differ only in lr and weight decay (same spec, setting, seed and every other
training field) form one grid and train together (:func:`.ensemble.train_grid`); each
member's row is ``runner.make_row(request, result, device)`` written under the request's own
``key``, so engine and plain results are interchangeable in the store (a run done by one is
skipped by the other).
"""
from __future__ import annotations

import json
import logging
import traceback
from typing import Callable

import torch

from ..results.store import ResultsStore
from ..runner import RunRequest, make_row, pending, run_one
from ..train.trainer import resolve_device
from .ensemble import EngineInfo, EngineOptions, train_grid

log = logging.getLogger("mad_bench.engine")


def group_key(req: RunRequest) -> str:
    """Everything that must be shared by the members of one ensemble."""
    training = req.training.model_dump(mode="json")
    training.pop("lr")
    training.pop("weight_decay")
    s = req.setting
    return json.dumps({"spec": req.spec.spec_hash(), "suite": s.suite, "task": s.task,
                       "setting": s.setting_id, "variables": s.variables(), "training": training},
                      sort_keys=True, default=str)


def group_requests(requests: list[RunRequest]) -> list[list[RunRequest]]:
    """Grids in first-seen order; within a grid the requests' order. Duplicate (lr, wd)
    points of one grid (the same key twice) are kept once."""
    groups: dict[str, list[RunRequest]] = {}
    for req in requests:
        members = groups.setdefault(group_key(req), [])
        if all(m.key != req.key for m in members):
            members.append(req)
    return list(groups.values())


def execute_engine(requests: list[RunRequest], store: ResultsStore, device: str | None = None,
                   force: bool = False,
                   on_row: Callable[[RunRequest, dict, int, int], None] | None = None,
                   progress_factory=None, options: EngineOptions | None = None,
                   fallback_on_error: bool = True,
                   on_grid: Callable[[list[RunRequest], EngineInfo], None] | None = None,
                   ) -> tuple[list[dict], int]:
    """``runner.execute``'s contract with the ensemble engine: run what the store lacks (all
    with ``force``), write each row as its grid lands; returns (new rows, number skipped).

    ``progress_factory(request)`` gets the grid's first request (one progress per grid).
    If the engine raises for a grid, the error is logged and, with ``fallback_on_error``,
    that grid's runs go through the plain trainer (``runner.run_one``) instead.
    ``on_grid(requests, info)`` reports what the engine did for each grid.
    """
    todo, skipped = pending(requests, store, force)
    rows: list[dict] = []
    if not todo:
        return rows, skipped
    store.ensure_writable()
    dev = resolve_device(device)
    done = 0
    for grid_reqs in group_requests(todo):
        first = grid_reqs[0]
        progress = progress_factory(first) if progress_factory else None
        info = EngineInfo()
        try:
            results = train_grid(first.spec, first.setting.task_setting, first.training,
                                 [(r.training.lr, r.training.weight_decay) for r in grid_reqs],
                                 device=dev, progress=progress, options=options, info=info)
            grid_rows = [make_row(r, res, dev) for r, res in zip(grid_reqs, results)]
        except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad grid
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            log.error("engine failed on %s: %s", first.describe(), detail)
            log.debug("%s", traceback.format_exc())
            info.fallback_reason = f"engine error: {detail}"
            if fallback_on_error:
                grid_rows = [run_one(r, str(dev)) for r in grid_reqs]
            else:
                grid_rows = [make_row(r, None, dev, error=detail) for r in grid_reqs]
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if on_grid:
            on_grid(grid_reqs, info)
        for req, row in zip(grid_reqs, grid_rows):
            store.write(req.key, row)
            rows.append(row)
            done += 1
            if on_row:
                on_row(req, row, done, len(todo))
    return rows, skipped
