"""Task suites (``tasks/*.yaml``): which task settings to train, with which hyperparameter grid.

A task entry has a ``baseline`` setting and ``changes``: each change varies one variable of the
baseline at a time (MAD's protocol: 66 settings). Every setting is trained at every point of
the grid (MAD: lr {1e-4, 5e-4, 1e-3} x weight decay {0, 0.1}); the best grid point counts.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .configs.architecture import ArchitectureSpec
from .configs.errors import SpecError, from_validation_error
from .configs.suite import Grid, Suite
from .configs.tasks import TASKS, TaskSetting, get_task
from .configs.train import TrainConfig
from .shipped import shipped_dir, shipped_file
from .spec.io import load_spec, read_document, validate_document

SUITES_DIR = shipped_dir("tasks")


@dataclass(frozen=True)
class Setting:
    """One task setting of a suite: the task's settings object plus its identity."""
    suite: str
    task: str
    setting_id: str           # "baseline" or "seq_len=256"
    task_setting: TaskSetting
    training: TrainConfig      # lr / wd are filled per grid point

    def variables(self) -> dict[str, Any]:
        return self.task_setting.model_dump(exclude={"task"})

    def setting_hash(self) -> str:
        """Identity of the task setting (task and every variable): rows carry it, so rows of a
        setting that has since changed are told apart from today's (``results.settings``)."""
        blob = json.dumps({"task": self.task, "setting": self.variables()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def sweep_widths(grid: Grid, specs: list[ArchitectureSpec]) -> list[ArchitectureSpec]:
    """Each spec at every ``d_model`` of the grid (the specs unchanged without one): a width
    sweep, as Zoology's figure (same name, the width in ``d_model`` and the spec hash)."""
    if not grid.d_model:
        return list(specs)
    return [load_spec({**spec.model_dump(mode="json"), "d_model": width})
            for spec in specs for width in grid.d_model]


def _check_keys(task: str, keys, where: str) -> list[tuple[str, str]]:
    fields = set(TASKS[task].model_fields) - {"task"}
    problems = []
    for key in keys:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(fields))})"
            problems.append((f"{where}.{key}", f"unknown setting for task {task!r}{hint}"))
    return problems


def _make_setting(task: str, values: dict, path: str):
    try:
        return TASKS[task].model_validate({"task": task, **values})
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise SpecError([(f"{path}.{p}" if p else path, m) for p, m in err.problems]) from None


def _make_training(values: dict, path: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise SpecError([(f"{path}.{p}" if p else path, m) for p, m in err.problems]) from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["seq_len=256", "noise_rate=0.4"]`` -> {"seq_len": 256, "noise_rate": 0.4} (YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError([("--set", f"{item!r} is not KEY=VALUE")])
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def default_suite(device: str | None) -> str:
    """The suite a command uses when none is named: ``mad`` (396 GPU-sized runs per spec) when
    training on a GPU, ``mad-quick`` otherwise; says so on stderr."""
    import torch  # the run commands' path only: validate and schema never import torch

    on_gpu = (device or "auto").startswith("cuda") or (device in (None, "auto") and torch.cuda.is_available())
    if on_gpu:
        print("suite: mad (the default when training on a GPU)", file=sys.stderr)
        return "mad"
    print("suite: mad-quick (the default without a GPU; --suite mad is the full protocol, "
          "396 GPU-sized runs per spec)", file=sys.stderr)
    return "mad-quick"


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``mad``, ``mad-quick``, ``mqar``, ``smoke``) or by file path."""
    path = shipped_file(name_or_path, "tasks")
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
            close = difflib.get_close_matches(str(name_or_path), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise SpecError([("--suite", f"unknown suite {str(name_or_path)!r} ({hint})")])
    try:
        return validate_document(Suite, read_document(path), source=str(path), union_fields=frozenset())
    except KeyError as exc:
        raise SpecError([("tasks", exc.args[0])], source=str(path)) from None


def expand(suite: Suite, tasks: list[str] | None = None, overrides: dict[str, Any] | None = None,
           train_overrides: dict[str, Any] | None = None, baseline_only: bool = False) -> list[Setting]:
    """All settings of a suite (baseline + one-variable changes), with CLI overrides applied.

    An override of a task variable applies to every setting of every selected task that has
    that variable; an unknown key for all selected tasks is an error.
    """
    overrides = overrides or {}
    if tasks:
        for t in tasks:
            if t not in suite.tasks:
                get_task(t)  # unknown task -> did-you-mean
                raise SpecError([("--task", f"task {t!r} is not in suite {suite.name!r} "
                                            f"(it has: {', '.join(suite.tasks)})")])
    selected = [t for t in suite.tasks if not tasks or t in tasks]
    unknown = [k for k in overrides
               if not any(k in TASKS[t].model_fields for t in selected)]
    if unknown:
        problems = []
        for key in unknown:
            problems += _check_keys(selected[0], [key], "--set")
        raise SpecError(problems)
    settings: list[Setting] = []
    for task in selected:
        entry = suite.tasks[task]
        problems = _check_keys(task, entry.baseline, f"tasks.{task}.baseline")
        problems += _check_keys(task, entry.changes, f"tasks.{task}.changes")
        for i, extra in enumerate(entry.settings):
            problems += _check_keys(task, [k for k in extra if k != "training"],
                                    f"tasks.{task}.settings[{i}]")
        if problems:
            raise SpecError(problems)
        training = _make_training({**suite.training, **entry.training, **(train_overrides or {})},
                                  f"tasks.{task}.training")
        local = {k: v for k, v in overrides.items() if k in TASKS[task].model_fields}
        variants = [("baseline", {}, training)]
        if not baseline_only:
            variants += [(f"{k}={v}", {k: v}, training)
                         for k, values in entry.changes.items() for v in values]
            for i, extra in enumerate(entry.settings):
                change = {k: v for k, v in extra.items() if k != "training"}
                own = training if "training" not in extra else _make_training(
                    {**suite.training, **entry.training, **extra["training"], **(train_overrides or {})},
                    f"tasks.{task}.settings[{i}].training")
                variants.append((",".join(f"{k}={v}" for k, v in change.items()), change, own))
        for setting_id, change, own_training in variants:
            values = {**entry.baseline, **change, **local}
            ts = _make_setting(task, values, f"tasks.{task}[{setting_id}]")
            sid = setting_id if not local else setting_id + "," + ",".join(f"{k}={v}" for k, v in local.items())
            settings.append(Setting(suite.name, task, sid, ts, own_training))
    return settings
