"""``madbench tune`` and ``madbench search``.

``register(subparsers)`` adds both to the main CLI (``mad_bench.cli``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

import yaml

from ..configs.errors import SpecError
from ..configs.train import TrainConfig
from ..interrupts import Interrupted
from ..spec import load_spec
from ..suite import default_suite, expand, load_suite, parse_overrides
from .objectives import OBJECTIVES, parse_objectives, spec_costs
from .space import load_space

DEFAULT_TRIALS = 20
SEARCH_SAMPLERS = ("tpe", "nsga2", "random")
TUNE_SAMPLERS = ("tpe", "grid", "random", "cmaes")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _exec_options(args):
    """Trials run in worker processes unless ``--in-process`` says otherwise."""
    from ..run.options import from_args

    return from_args(args, in_process=False)


@contextlib.contextmanager
def _interrupts(study, n_trials: int, args):
    """Ctrl-C while trials run: one line (trials finished, where, how to resume), exit 130.
    Trials left running are re-queued by ``--resume``."""
    from .study import count_done

    try:
        yield
    except KeyboardInterrupt:
        where = args.storage or str(Path(args.results) / study.study_name / "journal.log")
        raise Interrupted(f"interrupted: study {study.study_name} has {count_done(study)} of {n_trials} "
                          f"trial(s) finished, stored in {where}; add --resume to the same command to "
                          f"go on (trials cut short run again)") from None


def _work(study, n_trials: int, per_trial: list, args, engine) -> None:
    """The work line before minutes of silence: trials left x runs per trial, as bench says it."""
    from ..train.core import resolve_device
    from ..workload import describe
    from .study import count_done

    left = max(0, n_trials - count_done(study))
    if not left or not per_trial:
        return
    device = resolve_device(args.device).type
    _log(f"to do: {left} trial(s) x {len(per_trial)} run(s) per trial; "
         + describe(per_trial * left, device, engine.name))


def _summary(study, objectives, out_dir: Path, counts: dict) -> None:
    from .study import best_trials, trials_frame, write_best_specs

    frame = trials_frame(study, objectives)
    out_dir.mkdir(parents=True, exist_ok=True)  # an RDB --storage leaves no journal folder behind
    frame.to_csv(out_dir / "trials.csv", index=False)
    written = write_best_specs(study, objectives, out_dir) if any(
        t.user_attrs.get("spec") for t in study.trials) else []
    _log(f"study {study.study_name}: {len(frame)} trial(s) "
         + ", ".join(f"{k} {v}" for k, v in frame["state"].value_counts().items())
         + f" (this session: {counts})")
    for rank, t in enumerate(best_trials(study, objectives), 1):
        title = "Pareto front" if len(objectives) > 1 else ("best" if rank == 1 else f"#{rank}")
        vals = " ".join(f"{k}={v:.4g}" for k, v in zip(objectives, t.values))
        spec = (t.user_attrs.get("spec") or {}).get("name", "")
        params = " ".join(f"{k}={v}" for k, v in t.params.items())
        _log(f"{title}: trial {t.number} {spec} {vals} | {params}")
    for p in written:
        _log(f"wrote {p}")


# -- tune ----------------------------------------------------------------------------------

def cmd_tune(args) -> int:
    from ..results.store import ResultsStore
    from ..run.engines import make_engine
    from ..run.executors import make_executor
    from ..run.options import settings_from_args
    from ..run.plan import Grid, check_backbone
    from .study import InvalidTrial, drive, make_sampler, open_storage, open_study, target_trials
    from .worker import TrialJob

    if args.sampler not in TUNE_SAMPLERS:
        raise ValueError(f"--sampler: {args.sampler!r} is not valid for tune (valid: {', '.join(TUNE_SAMPLERS)})")
    objectives = parse_objectives(args.objectives)
    if objectives != ["mad_score"]:
        raise ValueError("tune has one objective: mad_score (the run's test accuracy)")
    options = _exec_options(args)
    engine = make_engine(options.engine, options.device)
    spec = load_spec(args.spec)
    space = load_space(args.space)
    suite = load_suite(args.suite)
    setting = settings_from_args(args, suite, [args.task], baseline_only=True)[0]
    check_backbone(spec, setting)
    grid = {"train.lr": list(suite.grid.lr), "train.weight_decay": list(suite.grid.weight_decay)}
    name = args.study or f"tune-{spec.name}-{setting.task}"
    results = Path(args.results)
    out_dir = results / name
    storage = open_storage(args.storage, out_dir / "journal.log")
    config = {"kind": "tune", "sampler": args.sampler, "seed": args.seed_sampler, "pruner": args.pruner,
              "objectives": objectives, "directions": ["maximize"], "spec_hash": spec.spec_hash(),
              "task": setting.task, "suite": suite.name}

    def sampler_factory(cfg, seed):
        return make_sampler(cfg["sampler"], seed, 1, grid=grid)

    study, config = open_study(name, storage, config, args.resume, sampler_factory)
    n_trials = target_trials(study, args.trials,
                             len(suite.grid.points()) if config["sampler"] == "grid" else DEFAULT_TRIALS)

    def make_job(trial):
        if config["sampler"] == "grid":
            values = {"lr": trial.suggest_float("train.lr", min(grid["train.lr"]), max(grid["train.lr"])),
                      "weight_decay": trial.suggest_float("train.weight_decay", min(grid["train.weight_decay"]),
                                                          max(grid["train.weight_decay"]))}
        else:
            values = {k: d.suggest(trial, f"train.{k}") for k, d in space.training.items()}
        try:
            cfg = TrainConfig.model_validate({**setting.training.model_dump(), **values})
        except Exception as exc:  # noqa: BLE001
            raise InvalidTrial(f"invalid training config: {exc}") from None
        trial.set_user_attr("training", cfg.model_dump(mode="json"))
        return TrialJob(study=name, number=trial.number, spec=spec,
                        grids=[Grid(spec, setting, (cfg,))], results_root=str(results),
                        report="epoch", metric=args.metric, engine=engine)

    store = ResultsStore(results)
    _work(study, n_trials, list(Grid(spec, setting, (setting.training,))), args, engine)
    with _interrupts(study, n_trials, args), make_executor(options) as ex:
        _log(f"tune {spec.name} on {setting.task} [{setting.setting_id}]: {n_trials} trial(s), "
             f"sampler {config['sampler']}, pruner {config['pruner']}, {ex.describe()}, study {name}")
        counts = drive(study, n_trials, make_job, ex, store, objectives, max_retries=options.max_retries,
                       log=_log)
    _summary(study, objectives, out_dir, counts)
    best = [t for t in study.trials if t.state.name == "COMPLETE"]
    if best:
        top = max(best, key=lambda t: t.value)
        (out_dir / "best-training.yaml").write_text(yaml.safe_dump(
            {"spec": spec.name, "task": setting.task, "setting": setting.setting_id,
             "score": top.value, "trial": top.number, "training": top.user_attrs.get("training")},
            sort_keys=False))
        _log(f"wrote {out_dir / 'best-training.yaml'}")
    return 0


# -- search --------------------------------------------------------------------------------

def cmd_search(args) -> int:
    from ..results.store import ResultsStore
    from ..run.engines import make_engine
    from ..run.executors import make_executor
    from ..run.options import settings_from_args
    from ..run.plan import check_backbone, plan, requests_of
    from .study import InvalidTrial, drive, make_sampler, open_storage, open_study, target_trials
    from .worker import TrialJob

    if args.sampler not in SEARCH_SAMPLERS:
        raise ValueError(f"--sampler: {args.sampler!r} is not valid for search (valid: {', '.join(SEARCH_SAMPLERS)})")
    objectives = parse_objectives(args.objectives)
    options = _exec_options(args)
    engine = make_engine(options.engine, options.device)
    space = load_space(args.space)
    if space.base is None:
        raise ValueError(f"search space {space.name!r} has no base spec: use it with `madbench tune`")
    suite = load_suite(args.suite)
    tasks = args.tasks or space.scoring.tasks
    mode = space.scoring.mode
    settings = settings_from_args(args, suite, tasks, baseline_only=space.scoring.baseline_only)
    grid = (suite.grid.lr, suite.grid.weight_decay) if mode == "grid" else (None, None)
    name = args.study or f"search-{space.name}-{suite.name}"
    results = Path(args.results)
    out_dir = results / name
    storage = open_storage(args.storage, out_dir / "journal.log")
    config = {"kind": "search", "sampler": args.sampler, "seed": args.seed_sampler, "pruner": args.pruner,
              "objectives": objectives, "directions": [OBJECTIVES[o] for o in objectives],
              "space": space.name, "suite": suite.name}
    if len(objectives) > 1 and args.pruner != "none":
        raise ValueError("--pruner: multi-objective trials cannot be pruned (Optuna); use --pruner none")

    def sampler_factory(cfg, seed):
        return make_sampler(cfg["sampler"], seed, len(cfg["objectives"]), population=args.population)

    study, config = open_study(name, storage, config, args.resume, sampler_factory)
    n_trials = target_trials(study, args.trials, DEFAULT_TRIALS)
    objectives = config["objectives"]
    train_keys = set() if mode == "tune" else (set(space.training) - {"lr", "weight_decay"}
                                                if mode == "grid" else set(space.training))

    def make_job(trial):
        spec_dict, training = space.sample(trial, f"{space.name}-t{trial.number}", train_keys)
        trial.set_user_attr("spec", spec_dict)
        try:
            spec = load_spec(spec_dict)
            for s in settings:
                check_backbone(spec, s)
        except (SpecError, ValueError) as exc:
            raise InvalidTrial(f"invalid spec: {exc}") from None
        try:
            costs = spec_costs(spec, settings)
        except Exception as exc:  # noqa: BLE001 - a primitive that refuses a shape
            raise InvalidTrial(f"spec does not build: {exc!r}") from None
        trial.set_user_attr("spec_hash", spec.spec_hash())
        trial.set_user_attr("costs", costs)
        c = space.constraints
        if c.max_params is not None and costs["params"] > c.max_params:
            raise InvalidTrial(f"over parameter budget: {costs['params']:,} > max_params {c.max_params:,}")
        if c.max_state_bytes is not None and costs["state_bytes"] > c.max_state_bytes:
            raise InvalidTrial(f"over state budget: {costs['state_bytes']:,} bytes > max_state_bytes "
                               f"{c.max_state_bytes:,}")
        try:  # the sampled training is validated with each grid member, in plan
            local = [dataclasses.replace(s, training=s.training.model_copy(update=training))
                     for s in settings]
            grids = plan([spec], local, *grid)
        except Exception as exc:  # noqa: BLE001
            raise InvalidTrial(f"invalid training config: {exc}") from None
        return TrialJob(study=name, number=trial.number, spec=spec, grids=grids,
                        results_root=str(results), mode="tune" if mode == "tune" else "runs",
                        report="run", inner_trials=space.scoring.tune_trials,
                        inner_space={k: d.model_dump() for k, d in space.training.items()},
                        seed=config["seed"] + trial.number, metric=args.metric,
                        measure_throughput="throughput" in objectives, engine=engine,
                        extra=dict(costs))

    store = ResultsStore(results)
    try:
        per_trial = requests_of(plan([load_spec(space.base)], settings, *grid))
        if mode == "tune":
            per_trial = per_trial * max(1, space.scoring.tune_trials)
    except Exception:  # noqa: BLE001 - the estimate only; a bad base shows up as pruned trials
        per_trial = []
    _work(study, n_trials, per_trial, args, engine)
    with _interrupts(study, n_trials, args), make_executor(options) as ex:
        _log(f"search {space.name} on {suite.name} ({len(settings)} setting(s), scoring {mode}): "
             f"{n_trials} trial(s), objectives {','.join(objectives)}, sampler {config['sampler']}, "
             f"{ex.describe()}, study {name}")
        counts = drive(study, n_trials, make_job, ex, store, objectives,
                       max_retries=options.max_retries, log=_log)
    _summary(study, objectives, out_dir, counts)
    return 0


# -- parser --------------------------------------------------------------------------------

def _common(p: argparse.ArgumentParser) -> None:
    from ..run.options import add_arguments

    add_arguments(p)
    p.add_argument("--suite", default=None, help="suite name or YAML path (default: mad when training "
                   "on a GPU, mad-quick otherwise)")
    p.add_argument("--trials", type=int, default=None,
                   help="finished trials wanted in the study (default: 20; tune --sampler grid: the "
                        "grid's points; --resume: the target stored in the study)")
    p.add_argument("--study", default=None, help="study name (default: derived from the inputs)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage: RDB URL (sqlite:///x.db, postgresql://...) or a journal "
                        "file path (default: RESULTS/<study>/journal.log)")
    p.add_argument("--resume", action="store_true", help="continue an existing study")
    p.add_argument("--pruner", default=None,
                   help="none | median | sha | hyperband (default: median for tune, none for search)")
    p.add_argument("--seed-sampler", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task variable")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the suite's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the suite's)")
    p.add_argument("--seed", type=int, default=None, help="training seed")
    p.add_argument("--metric", default="test_acc_macro", choices=["test_acc_macro", "test_acc"],
                   help="score: test_acc_macro (MAD's macro accuracy, default) or test_acc (micro)")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--objectives", default="mad_score",
                   help="comma list of mad_score, params, state_bytes, throughput (default: mad_score)")


def register(subparsers) -> None:
    p = subparsers.add_parser("tune", help="self-tune training hyperparameters of one spec on one task")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML / JSON)")
    p.add_argument("--task", required=True, help="task of the suite, e.g. in-context-recall")
    p.add_argument("--sampler", default="tpe",
                   help="tpe (default) | grid (the suite's lr x wd: MAD) | random | cmaes")
    p.add_argument("--space", default="lr-wd", help="search space with `training` ranges (default lr-wd)")
    _common(p)
    p.set_defaults(func=_with_defaults(cmd_tune, pruner="median"))

    p = subparsers.add_parser("search", help="architecture search over a search space")
    p.add_argument("space", metavar="SPACE", help="search space file or shipped name")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks of the suite")
    p.add_argument("--sampler", default="tpe", help="tpe (default) | nsga2 | random")
    p.add_argument("--population", type=int, default=None,
                   help="nsga2: population size (default: 8); tpe: random start-up trials, 2 to 10 "
                        "(default: 10)")
    _common(p)
    p.set_defaults(func=_with_defaults(cmd_search, pruner="none"))


def _with_defaults(fn, **defaults):
    def run(args):
        for k, v in defaults.items():
            if getattr(args, k, None) is None:
                setattr(args, k, v)
        if args.trials is not None and args.trials < 1:
            raise ValueError("--trials must be >= 1")
        if args.suite is None:
            args.suite = default_suite(args.device)
        return fn(args)
    run.__name__ = fn.__name__
    return run
