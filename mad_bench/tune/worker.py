"""What runs on a worker: one trial = the grids that score one sampled spec (or one training
configuration). Executors (local thread / process, Ray task) call ``TrialJob.run``.

The trial's grids train through the run layer's engine (:mod:`mad_bench.run.engines`), one
engine unit at a time; what is here is the trial's own part: reporting accuracies for pruning,
the score, the inner study of ``scoring: tune``. Each run's row is written to the results store
as soon as it lands (when the worker can reach the store) and all rows go back to the driver,
which writes them again (idempotent: one file per run key) before it tells Optuna. A run
already in the store with status ok/diverged is reused.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from ..run.executors.base import Reporter


@dataclass
class TrialJob:
    study: str
    number: int                     # Optuna trial number
    spec: Any                       # ArchitectureSpec
    grids: list                     # list[run.plan.Grid]
    results_root: str | None
    mode: str = "runs"              # runs | tune (inner study per setting over `inner_space`)
    report: str = "epoch"           # epoch: report each eval's accuracy; run: partial score per run
    inner_space: dict = field(default_factory=dict)   # name -> Dist (mode tune)
    inner_trials: int = 0
    seed: int = 0
    metric: str = "test_acc_macro"
    measure_throughput: bool = False
    attempt: int = 0
    fault_kill: bool = False        # test hook: the worker SIGKILLs itself at its first eval
    engine: Any = None              # run.engines.Engine (None: plain)
    extra: dict = field(default_factory=dict)

    @property
    def handle(self) -> str:
        return f"{self.number}.{self.attempt}"

    @property
    def requests(self) -> list:
        return [r for g in self.grids for r in g]

    def retry(self) -> "TrialJob":
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def run(self, report: Reporter, device: str | None, progress=None) -> dict[str, Any]:
        return run_trial(self, report, device)


class Pruned(Exception):
    pass


def _reusable(store, key: str) -> dict | None:
    row = store.read(key) if store is not None else None
    return row if row is not None and row.get("status") in ("ok", "diverged") else None


def run_trial(job: TrialJob, report: Reporter, device: str | None = None) -> dict[str, Any]:
    """Run the job's runs; returns {status: ok|pruned, rows, metrics, reason, node}."""
    from ..results.aggregate import mad_score, row_score
    from ..results.store import ResultsStore
    from ..run.engines import PlainEngine
    from ..train.core import resolve_device
    from .objectives import measure_throughput

    store = None
    if job.results_root:
        try:
            store = ResultsStore(job.results_root)
            store.ensure_writable()
        except OSError:
            store = None  # a worker on another machine: the driver writes the rows
    dev = resolve_device(device)
    rows: list[dict] = []
    state = {"evals": 0, "pruned": False}

    def on_eval(epoch: int, metrics: dict) -> bool:
        state["evals"] += 1
        if job.fault_kill and state["evals"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if job.report == "epoch":
            value = metrics.get("test_acc_macro" if job.metric == "test_acc_macro" else "test_acc", 0.0)
            if report(epoch, float(value) if math.isfinite(value) else 0.0):
                state["pruned"] = True
        return state["pruned"]

    engine = job.engine or PlainEngine()

    def do_runs(grid) -> list[dict]:
        """The grid's rows in order: reused from the store, or trained by the job's engine."""
        found = {req.key: _reusable(store, req.key) for req in grid}
        todo = grid.select([i for i, req in enumerate(grid) if found[req.key] is None])
        trained = engine.rows(todo, str(dev), on_eval=[on_eval] * len(todo)) if len(todo) else []
        for req, row in zip(todo, trained):
            row.update(study=job.study, trial=job.number)
            if store is not None:
                store.write(req.key, row)
            found[req.key] = row
        out = [found[req.key] for req in grid]
        rows.extend({**row, "run_key": req.key} for req, row in zip(grid, out))
        return out

    requests = job.requests
    try:
        if job.mode == "tune":
            _inner_tune(job, do_runs)
        else:
            units = [unit for grid in job.grids for unit in engine.units(grid)]
            for i, unit in enumerate(units):
                do_runs(unit)
                if state["pruned"]:
                    raise Pruned()
                if job.report == "run" and report(i, mad_score(rows, job.metric)):
                    raise Pruned()
    except Pruned:
        state["pruned"] = True
    if job.fault_kill:  # every run came from the store: die before reporting back
        os.kill(os.getpid(), signal.SIGKILL)
    metrics = {"mad_score": mad_score(rows, job.metric)}
    if len(requests) == 1 and job.mode != "tune" and rows:
        metrics["mad_score"] = row_score(rows[0], job.metric)
    metrics["params"] = next((int(r["params"]) for r in rows if r.get("params") not in (None,)
                              and not (isinstance(r.get("params"), float) and math.isnan(r["params"]))), 0)
    if job.measure_throughput and requests and not state["pruned"]:
        try:
            metrics["throughput"] = measure_throughput(job.spec, requests[0].setting,
                                                       requests[0].training.batch_size, dev)
        except Exception as exc:  # noqa: BLE001 - no value: the driver records the trial FAIL
            metrics.pop("throughput", None)
            metrics["throughput_error"] = repr(exc)
    statuses = {r.get("status") for r in rows}
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:  # a crashed run is no score: the trial is a failure with the run's error
        first = failed[0]
        reason = (f"{len(failed)} of {len(rows)} run(s) failed; first: {first.get('task')} "
                  f"[{first.get('setting')}]: {first.get('error') or 'no error recorded'}")
        status = "failed"
    else:
        status = "pruned" if state["pruned"] else "ok"
        reason = "pruned on intermediate accuracy" if state["pruned"] else None
    return {"status": status, "rows": rows, "metrics": metrics, "reason": reason,
            "diverged": "diverged" in statuses, "node": socket.gethostname(), "pid": os.getpid()}


def _inner_tune(job: TrialJob, do_runs) -> None:
    """Per setting, a small in-memory TPE study over the space's training distributions."""
    import optuna

    from ..results.aggregate import row_score
    from ..configs.space import Dist
    from ..configs.train import TrainConfig
    from ..run.plan import Grid

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {k: Dist.model_validate(v) for k, v in job.inner_space.items()}
    for req in job.requests:
        inner = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=job.seed, n_startup_trials=2))
        for _ in range(job.inner_trials):
            t = inner.ask()
            values = {k: d.suggest(t, k) for k, d in space.items()}
            try:
                cfg = TrainConfig.model_validate({**req.training.model_dump(), **values})
            except Exception:  # noqa: BLE001 - e.g. lr below min_lr
                inner.tell(t, state=optuna.trial.TrialState.PRUNED)
                continue
            (row,) = do_runs(Grid(req.spec, req.setting, (cfg,)))
            inner.tell(t, row_score(row, job.metric))
