"""Plan and execute runs: (spec x suite setting x grid point x seed) -> result rows.

``plan`` expands the work; ``run_one`` trains one run and returns its row (never raises:
a crash becomes a ``failed`` row with the reason); ``execute`` skips runs already in the
store, runs the rest sequentially or in worker processes, and writes each row as it lands.
"""
from __future__ import annotations

import os
import platform
import traceback
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import torch
from pydantic import ValidationError

from . import __version__
from .results.store import ResultsStore, run_key
from .spec import ArchitectureSpec
from .spec.errors import from_validation_error
from .suite import Setting
from .train.config import TrainConfig
from .train.trainer import RunResult, resolve_device, train


@dataclass(frozen=True)
class RunRequest:
    spec: ArchitectureSpec
    setting: Setting
    training: TrainConfig

    @property
    def key(self) -> str:
        return run_key(self.spec.spec_hash(), self.setting.task, self.setting.variables(),
                       self.training.model_dump(mode="json"))

    def describe(self) -> str:
        return (f"{self.spec.name} | {self.setting.task} [{self.setting.setting_id}] "
                f"lr={self.training.lr:g} wd={self.training.weight_decay:g} seed={self.training.seed}")


def check_backbone(spec: ArchitectureSpec, setting: Setting) -> None:
    need = setting.task_setting.backbone
    if spec.backbone is not None and spec.backbone != need:
        raise ValueError(f"spec {spec.name!r} has backbone {spec.backbone!r} but task "
                         f"{setting.task!r} needs {need!r}")


def plan(specs: list[ArchitectureSpec], settings: list[Setting],
         grid: list[tuple[float, float]] | None = None, seeds: list[int] | None = None) -> list[RunRequest]:
    """Every spec x setting x (lr, wd) x seed. ``grid`` None: the settings' own lr / wd."""
    requests = []
    for spec in specs:
        for setting in settings:
            check_backbone(spec, setting)
            points = grid or [(setting.training.lr, setting.training.weight_decay)]
            for lr, wd in points:
                for seed in seeds or [setting.training.seed]:
                    try:  # validated: bounds and min_lr <= lr
                        cfg = TrainConfig.model_validate(
                            {**setting.training.model_dump(), "lr": lr, "weight_decay": wd, "seed": seed})
                    except ValidationError as exc:
                        raise from_validation_error(exc, model=TrainConfig) from None
                    requests.append(RunRequest(spec, setting, cfg))
    return requests


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def make_row(req: RunRequest, result: RunResult | None, device: torch.device,
             error: str | None = None) -> dict[str, Any]:
    spec, setting = req.spec, req.setting
    row: dict[str, Any] = {
        "spec": spec.name, "spec_hash": spec.spec_hash(), "primitives": spec.primitives_summary(),
        "suite": setting.suite, "task": setting.task, "setting": setting.setting_id,
        **setting.variables(),
        "lr": req.training.lr, "weight_decay": req.training.weight_decay, "seed": req.training.seed,
        "epochs": req.training.epochs, "batch_size": req.training.batch_size,
        "device": device_name(device), "version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if result is None:
        row.update(status="failed", error=error, params=None)
    else:
        row.update(result.to_dict())
        row["error"] = error
    return row


def run_one(req: RunRequest, device: str | None = None, progress=None,
            on_eval=None) -> dict[str, Any]:
    """Train one run; its row. Exceptions inside training become a ``failed`` row."""
    dev = resolve_device(device)
    try:
        result = train(req.spec, req.setting.task_setting, req.training, device=str(dev),
                       progress=progress, on_eval=on_eval)
        return make_row(req, result, dev)
    except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad run
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return make_row(req, None, dev, error=detail)


def _exit_with_parent(parent: int) -> None:
    """Worker processes outlive a killed driver; this one ends itself when its parent goes."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(req: RunRequest, device: str | None, threads: int, root: str,
            parent: int) -> dict[str, Any]:
    _exit_with_parent(parent)
    torch.set_num_threads(threads)
    row = run_one(req, device)
    ResultsStore(root).write(req.key, row)
    return row


def pending(requests: list[RunRequest], store: ResultsStore,
            force: bool = False) -> tuple[list[RunRequest], int]:
    """The requests without a result in the store (all with ``force``) and how many were
    skipped. A stored failed run is retried (its row is replaced); a diverged run is a result."""
    todo = [r for r in requests if force or not store.has_result(r.key)]
    return todo, len(requests) - len(todo)


def execute(requests: list[RunRequest], store: ResultsStore, device: str | None = None,
            workers: int = 1, force: bool = False,
            on_row: Callable[[RunRequest, dict, int, int], None] | None = None,
            progress_factory=None) -> tuple[list[dict], int]:
    """Run what the store lacks (all with ``force``); returns (new rows, number skipped).

    ``on_row(request, row, done, total)`` is called as each run lands; ``progress_factory()``
    gives a per-run progress object (sequential execution only).
    """
    todo, skipped = pending(requests, store, force)
    rows: list[dict] = []
    if not todo:
        return rows, skipped
    store.ensure_writable()
    if workers <= 1:
        for i, req in enumerate(todo, 1):
            progress = progress_factory(req) if progress_factory else None
            row = run_one(req, device, progress=progress)
            store.write(req.key, row)
            rows.append(row)
            if on_row:
                on_row(req, row, i, len(todo))
        return rows, skipped
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_worker, req, device, threads, str(store.root), os.getpid()): req
                   for req in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            req = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker process
                row = make_row(req, None, resolve_device(device), error=f"worker died: {exc!r}")
                store.write(req.key, row)
            rows.append(row)
            if on_row:
                on_row(req, row, i, len(todo))
    return rows, skipped
