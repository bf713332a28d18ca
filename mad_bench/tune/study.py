"""The driver: it holds the Optuna study (ask / tell), hands trials to an executor, feeds
intermediate accuracies to the pruner, retries trials whose worker died, and writes every
finished trial's rows to the results store before telling Optuna.

Storage is ``JournalStorage(JournalFileBackend(results/<study>/journal.log))`` by default, or an
RDB URL. Sampler and pruner state is not stored: they are re-created from the seed kept in the
study's user attributes (offset by the number of trials already asked, so a resumed random or
TPE start-up sampler does not replay the first trials). On ``--resume``, trials left RUNNING by a
killed driver are marked FAIL (``stale``) and their parameters are enqueued again.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..run.executors.loop import drive_jobs
from ..results.store import ResultsStore
from ..run.rows import make_row
from ..spec.io import dump_spec, load_spec
from ..studies import open_storage  # noqa: F401 - tune / search open their storage here
from ..train.trainer import resolve_device

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2")
PRUNERS = ("none", "median", "sha", "hyperband")

optuna.logging.set_verbosity(optuna.logging.WARNING)


class InvalidTrial(Exception):
    """A sampled configuration that cannot run (invalid spec, over budget): pruned with reason."""


def _choice(flag: str, value: str, valid) -> str:
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{flag}: unknown value {value!r} ({hint}valid: {', '.join(valid)})")
    return value


def make_sampler(name: str, seed: int, n_objectives: int, grid: dict | None = None,
                 population: int | None = None):
    _choice("--sampler", name, SAMPLERS)
    S = optuna.samplers
    if name == "tpe":
        return S.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                            n_startup_trials=min(10, max(2, (population or 10))))
    if name == "random":
        return S.RandomSampler(seed=seed)
    if name == "nsga2":
        return S.NSGAIISampler(seed=seed, population_size=population or 8)
    if name == "grid":
        if not grid:
            raise ValueError("--sampler grid: nothing to grid over")
        return _AskTellGridSampler(grid, seed=seed)
    if n_objectives > 1:
        raise ValueError("--sampler cmaes: single objective only (use nsga2 or tpe)")
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise ValueError("--sampler cmaes needs the 'cmaes' package: pip install cmaes") from None
    return S.CmaEsSampler(seed=seed, warn_independent_sampling=False)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler calls ``study.stop()`` once the grid is done, which only works inside
    ``study.optimize``; the driver counts trials itself (ask/tell)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_pruner(name: str):
    _choice("--pruner", name, PRUNERS)
    P = optuna.pruners
    return {"none": P.NopPruner, "median": lambda: P.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            "sha": lambda: P.SuccessiveHalvingPruner(min_resource=1),
            "hyperband": lambda: P.HyperbandPruner(min_resource=1)}[name]()


def open_study(name: str, storage, config: dict, resume: bool,
               sampler_factory: Callable[[dict, int], object]) -> tuple[optuna.Study, dict]:
    """Create a new study or (``resume``) load it; returns (study, its stored config)."""
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if name in names and not resume:
        raise ValueError(f"study {name!r} already exists in the storage: add --resume to continue "
                         f"it, or pick another --study NAME")
    if resume and name not in names:
        raise ValueError(f"--resume: no study {name!r} in the storage to resume")
    if resume:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = study.user_attrs.get("config", {})
        if stored.get("kind") and stored["kind"] != config["kind"]:
            raise ValueError(f"--resume: study {name!r} is a {stored['kind']} study, not {config['kind']}")
        config = {**config, **stored}
        requeue_stale(study)
    else:
        study = optuna.create_study(study_name=name, storage=storage,
                                    directions=config["directions"])
        study.set_user_attr("config", config)
    study.sampler = sampler_factory(config, config["seed"] + len(study.trials))
    study.pruner = make_pruner(config.get("pruner", "none"))
    return study, config


def target_trials(study: optuna.Study, given: int | None, default: int) -> int:
    """Finished trials the study should reach: ``--trials`` when given (stored as the new target),
    else the target stored when the study was made (a resumed study keeps its size), else ``default``."""
    stored = study.user_attrs.get("n_trials")
    if given is not None:
        if given != stored:
            study.set_user_attr("n_trials", int(given))
        return int(given)
    if stored is not None:
        return int(stored)
    study.set_user_attr("n_trials", int(default))
    return int(default)


def requeue_stale(study: optuna.Study) -> list[int]:
    """Trials RUNNING when the driver died: mark FAIL (``stale``) and enqueue their params."""
    out = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "stale", True)
        storage.set_trial_user_attr(t._trial_id, "fail_reason", "driver stopped while running; re-queued")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})
        out.append(t.number)
    return out


def count_done(study: optuna.Study) -> int:
    final = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=final) if not t.user_attrs.get("stale"))


def _fault_kill(number: int, attempt: int) -> bool:
    """Test hook: MADBENCH_FAULT_KILL_TRIALS=0,3 makes those trials' workers SIGKILL themselves
    at their first evaluation, for the first MADBENCH_FAULT_KILL_ATTEMPTS (default 1) attempts."""
    spec = os.environ.get("MADBENCH_FAULT_KILL_TRIALS", "")
    if not spec:
        return False
    numbers = {int(x) for x in spec.split(",") if x.strip()}
    return number in numbers and attempt < int(os.environ.get("MADBENCH_FAULT_KILL_ATTEMPTS", "1"))


def drive(study: optuna.Study, n_trials: int, make_job: Callable, executor, store: ResultsStore,
          objectives: list[str], max_retries: int = 2, log: Callable[[str], None] = print) -> dict:
    """Run trials until ``n_trials`` have finished in the study (counting earlier ones)."""
    single = len(objectives) == 1
    trials: dict[int, optuna.Trial] = {}
    reported: dict[int, set] = {}    # steps already reported per trial (a retry reports again)
    counts = {"complete": 0, "pruned": 0, "failed": 0, "retried": 0}
    remaining = max(0, n_trials - count_done(study))
    launched = 0
    store.ensure_writable()

    def next_job():
        nonlocal launched
        while launched < remaining:
            trial = study.ask()
            launched += 1
            try:
                job = make_job(trial)
            except InvalidTrial as exc:
                trial.set_user_attr("prune_reason", str(exc))
                study.tell(trial, state=TrialState.PRUNED)
                counts["pruned"] += 1
                log(f"trial {trial.number}: pruned before running: {str(exc).splitlines()[0]}")
                continue
            job.fault_kill = executor.isolated and _fault_kill(job.number, job.attempt)
            trials[trial.number] = trial
            return job
        return None

    def on_report(job, step: int, value: float) -> None:
        trial = trials[job.number]
        if single and step not in reported.setdefault(job.number, set()):
            reported[job.number].add(step)
            trial.report(value, step)
            if trial.should_prune():
                executor.prune(job)

    def on_retry(job, reason: str) -> None:
        counts["retried"] += 1
        job.fault_kill = executor.isolated and _fault_kill(job.number, job.attempt)
        log(f"trial {job.number}: worker died ({reason}); retry {job.attempt}/{max_retries}")

    def on_failed(job, reason: str) -> None:
        _record_failure(study, trials[job.number], job, store, reason)
        counts["failed"] += 1
        log(f"trial {job.number}: failed after {job.attempt + 1} attempt(s): {reason}")

    def on_done(job, outcome: dict) -> None:
        state, metrics = _finish(study, trials[job.number], job, outcome, store, objectives)
        if state == TrialState.FAIL:
            counts["failed"] += 1
            log(f"trial {job.number}: failed: {trials[job.number].user_attrs['fail_reason']}")
            return
        if state == TrialState.PRUNED:
            counts["pruned"] += 1
            log(f"trial {job.number}: pruned ({outcome.get('reason') or 'pruned'})")
            return
        counts["complete"] += 1
        log(f"trial {job.number}: complete "
            + " ".join(f"{k}={metrics[k]:.4g}" for k in objectives))

    drive_jobs(executor, next_job, on_done, on_failed, on_report=on_report, on_retry=on_retry,
               max_retries=max_retries)
    return counts


def trial_metrics(job, outcome: dict) -> dict:
    """The trial's objective values: the worker's measurements, with the driver's costs (largest
    over the settings) in place of the worker's first-row ``params``."""
    costs = {k: v for k, v in job.extra.items() if k in ("params", "state_bytes")}
    return {**outcome["metrics"], **costs}


def _finish(study, trial, job, outcome: dict, store: ResultsStore,
            objectives: list[str]) -> tuple[TrialState, dict]:
    keys = []
    for row in outcome["rows"]:
        key = row.pop("run_key")
        keys.append(key)
        if not store.has_result(key):  # a run that failed before is replaced by its result
            store.write(key, row)
    metrics = trial_metrics(job, outcome)
    trial.set_user_attr("run_keys", keys)
    trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
    trial.set_user_attr("attempts", job.attempt + 1)
    trial.set_user_attr("node", str(outcome.get("node")))
    if outcome.get("diverged"):
        trial.set_user_attr("diverged", True)
    if outcome["status"] == "failed":  # a run crashed: no score (0 would rank it), a failure
        trial.set_user_attr("fail_reason", outcome.get("reason") or "a run failed")
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL, metrics
    if outcome["status"] == "pruned":
        trial.set_user_attr("prune_reason", outcome.get("reason") or "pruned")
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED, metrics
    missing = [k for k in objectives if not isinstance(metrics.get(k), (int, float))]
    if missing:
        reason = f"no value for objective(s) {', '.join(missing)}"
        if metrics.get("throughput_error"):
            reason += f" (throughput: {metrics['throughput_error']})"
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL, metrics
    study.tell(trial, [float(metrics[k]) for k in objectives])
    return TrialState.COMPLETE, metrics


def _record_failure(study, trial, job, store: ResultsStore, reason: str) -> None:
    keys = []
    for req in job.requests:
        keys.append(req.key)
        if not store.has(req.key):
            row = make_row(req, None, resolve_device("cpu"), error=reason)
            row.update(study=job.study, trial=job.number)
            store.write(req.key, row)
    trial.set_user_attr("run_keys", keys)
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr("attempts", job.attempt + 1)
    study.tell(trial, state=TrialState.FAIL)


def best_trials(study: optuna.Study, objectives: list[str], top: int = 3) -> list:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return []
    if len(objectives) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: (sign * t.value, t.number))[:top]


def write_best_specs(study: optuna.Study, objectives: list[str], out_dir: Path, top: int = 3) -> list[Path]:
    """Each best (single objective: top ``top``; several: the Pareto front) spec as a spec file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for pattern in ("best-*.yaml", "pareto-*.yaml"):  # a resumed study's front may have moved
        for old in out_dir.glob(pattern):
            old.unlink()
    prefix = "pareto" if len(objectives) > 1 else "best"
    for rank, t in enumerate(best_trials(study, objectives, top), 1):
        spec = t.user_attrs.get("spec")
        if not spec:
            continue
        tag = f"{prefix}-{rank}-t{t.number}" if prefix == "best" else f"{prefix}-t{t.number}"
        path = out_dir / f"{tag}.yaml"
        dump_spec(load_spec(spec), path)
        written.append(path)
    return written


def trials_frame(study: optuna.Study, objectives: list[str]):
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        m = dict(t.user_attrs.get("metrics", {}))
        if t.state != TrialState.COMPLETE:  # a failed or pruned trial has no score (sizes stay)
            for k in ("mad_score", "throughput"):
                m.pop(k, None)
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     **{k: (t.values[i] if t.values else m.get(k)) for i, k in enumerate(objectives)},
                     "spec": (t.user_attrs.get("spec") or {}).get("name"),
                     "reason": t.user_attrs.get("prune_reason") or t.user_attrs.get("fail_reason"),
                     "attempts": t.user_attrs.get("attempts"),
                     **{f"param:{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)
