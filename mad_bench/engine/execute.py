"""Planned RunRequests through the ensemble engine, as the plain runner's rows.

Requests that differ only in lr and weight decay (same spec, setting, seed and every other
training field) form one grid and train together (:func:`.ensemble.train_grid`); each
member's row is ``runs.make_row(request, result, device)``, so engine and plain results are
interchangeable in the store (a run done by one is skipped by the other). The executors
(:mod:`mad_bench.execute`) run one grid per job through :func:`run_grid_rows`.
"""
from __future__ import annotations

import json
import logging
import traceback
from typing import Callable, Sequence

import torch

from ..runs import RunRequest, error_line, make_row, run_one
from ..train.core import resolve_device
from ..train.ensemble import EngineInfo, EngineOptions, train_grid

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


def run_grid_rows(requests: list[RunRequest], device: str | None, options: EngineOptions | None = None,
                  *, progress=None, on_eval: Sequence[Callable | None] | None = None,
                  info: EngineInfo | None = None, fallback_on_error: bool = True) -> list[dict]:
    """Train one grid (requests differing only in lr / weight decay) as one ensemble; the
    rows in request order. Never raises: if the engine fails, the error is logged and (with
    ``fallback_on_error``) the grid's runs go through the plain trainer, else they become
    ``failed`` rows. ``on_eval``: one trainer-style callback per request; ``info`` is filled
    with what the engine did."""
    if not requests:
        return []
    if len({group_key(r) for r in requests}) != 1:
        raise ValueError("run_grid_rows: the requests differ in more than lr / weight_decay "
                         "(split them with group_requests)")
    dev = resolve_device(device)
    first = requests[0]
    info = info if info is not None else EngineInfo()
    try:
        results = train_grid(first.spec, first.setting.task_setting, first.training,
                             [(r.training.lr, r.training.weight_decay) for r in requests],
                             device=dev, progress=progress, options=options, on_eval=on_eval,
                             info=info)
        return [make_row(r, res, dev) for r, res in zip(requests, results)]
    except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad grid
        detail = error_line(exc)
        log.error("engine failed on %s: %s", first.describe(), detail)
        log.debug("%s", traceback.format_exc())
        info.fallback_reason = f"engine error: {detail}"
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if not fallback_on_error:
            return [make_row(r, None, dev, error=detail) for r in requests]
        callbacks = list(on_eval) if on_eval is not None else [None] * len(requests)
        return [run_one(r, str(dev), on_eval=cb) for r, cb in zip(requests, callbacks)]
