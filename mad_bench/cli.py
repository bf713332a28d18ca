"""The ``madbench`` command. Each subcommand is a small function over the library API."""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from pathlib import Path

from .argtypes import positive_int
from .configs.errors import SpecError
from .interrupts import EXIT_CODE, Interrupted
from .lm.commands import register as register_lm
from .results.commands import register as register_results
from .run.options import DEVICE_FORMS, from_args, settings_from_args
from .run.options import add_arguments as add_exec_arguments
from .spec import load_spec, spec_json_schema
from .suite import default_suite, expand, load_suite, parse_overrides, sweep_widths
from .tune.commands import register as register_tune


@functools.cache
def _console():
    """rich, loaded by the commands that print tables only (validate and --help start faster)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _table(**kwargs):
    from rich.table import Table

    return Table(**kwargs)


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""




DESCRIPTION = """Declarative architecture search and benchmarking for sequence models: write an
architecture as a YAML spec, score it on MAD-style synthetic tasks, tune and search. Start with
`madbench primitives`, `madbench validate SPEC` and `madbench COMMAND --help`."""



class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): ``error: <what> (see madbench X --help)``."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):
        """Unknown options name the subcommand's help (``madbench tune --help``), not the top's."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(ns, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            hint = TRAINING_FLAG_HINTS.get(command, "") if any(
                e.split("=")[0] in ("--lr", "--wd") for e in extras) else ""
            self.exit(2, f"error: unrecognized arguments: {' '.join(extras)} (see `{prog} --help`)"
                         f"{hint}\n")
        return ns


TRAINING_FLAG_HINTS = {
    "tune": "; tune samples lr and weight decay itself: set their ranges in a --space file "
            "(default: lr-wd), or train one point with `madbench run SPEC --lr X --wd Y`",
    "search": "; search takes training ranges from its space's `training` section",
}


def check_device(device: str | None) -> None:
    """``--device`` must name a device form this machine has; one-line UsageError otherwise."""
    if device in (None, "auto", "cpu"):
        return
    if not re.fullmatch(r"cuda(:\d+)?|mps", device):
        raise UsageError(f"--device {device!r} is not a device (valid: {DEVICE_FORMS})")
    import torch

    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("--device mps: no Apple GPU (MPS) on this machine (valid here: auto, cpu"
                             + (", cuda" if torch.cuda.is_available() else "") + ")")
        return
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine (valid here: auto, cpu)")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (valid: cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


def spec_files(paths: list[str]) -> list[str]:
    """Arguments of ``validate``: files as given, a directory as its *.yaml / *.yml / *.json files."""
    out = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in (".yaml", ".yml", ".json"))
            out += [str(f) for f in found] or [path]
        else:
            out.append(path)
    return out


# -- spec commands -----------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in spec_files(args.specs):
        if Path(path).is_dir():
            failed += 1
            print(f"{path}: no spec files (*.yaml, *.yml, *.json) in this directory", file=sys.stderr)
            continue
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed += 1
            print(exc.format(), file=sys.stderr)
            continue
        print(f"{path}: ok ({spec.name}: {spec.primitives_summary()})")
    return 2 if failed else 0


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_info(args: argparse.Namespace) -> int:
    from .info import summarize  # builds the model: torch

    spec = load_spec(args.spec)
    rows, total = summarize(spec, args.vocab_size, args.seq_len, backbone=args.backbone)
    table = _table(title=f"{spec.name}  (d_model {spec.d_model}, vocab {args.vocab_size}, "
                        f"seq_len {args.seq_len})")
    for col in ("layer", "primitive", "kind", "params", "FLOPs/token (fwd)", "state / sequence"):
        table.add_column(col, justify="right" if col not in ("primitive", "kind") else "left")
    for r in rows + [total]:
        table.add_row(r.index, r.primitive, r.kind, f"{r.params:,}", _si(r.flops_per_token),
                      _bytes(r.state_bytes), end_section=r is rows[-1])
    _console().print(table)
    _console().print("state: recurrent state or KV cache per sequence at fp32 for seq_len tokens")
    return 0


def cmd_primitives(args: argparse.Namespace) -> int:
    from .primitives import REGISTRY  # the modules' docstrings: torch

    table = _table(title="registered primitives")
    for col in ("name", "kind", "parameters (defaults)", "what"):
        table.add_column(col)
    for kind in ("sequence", "channel"):
        for name, entry in sorted(REGISTRY.items()):
            if entry.kind != kind:
                continue
            params = ", ".join(f"{k}={f.default!r}" for k, f in entry.config.model_fields.items()
                               if k != "type")
            table.add_row(name, kind, params, entry.doc)
    _console().print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_json_schema(), indent=2))
    return 0


# -- training commands -------------------------------------------------------------------

def _settings_from_args(args, baseline_only: bool):
    suite = load_suite(args.suite or default_suite(args.device))
    tasks = [args.task] if getattr(args, "task", None) else (getattr(args, "tasks", None) or None)
    return suite, settings_from_args(args, suite, tasks, baseline_only)


def _grid_from_args(args, suite, use_suite_grid: bool) -> tuple[list | None, list | None]:
    """The lr and weight-decay axes of the plan: ``--lr`` / ``--wd`` where given, else the
    suite's grid (bench; run: where the suite's grid is one point); None: each setting's own."""
    suite_grid = use_suite_grid or len(suite.grid.points()) == 1  # a one-point grid is the suite's choice
    if args.lr is not None or args.wd is not None:
        suite_grid = use_suite_grid
    lrs = [args.lr] if args.lr is not None else (list(suite.grid.lr) if suite_grid else None)
    wds = [args.wd] if args.wd is not None else (list(suite.grid.weight_decay) if suite_grid else None)
    return lrs, wds


def _execute(grids, args, options, title: str):
    """Run the plan's grids as the execution options say; Ctrl-C ends with one line saying
    what landed and how to go on."""
    from .results import ResultsStore
    from .run.driver import prepare
    from .run.engines import make_engine
    from .run.plan import requests_of

    store = ResultsStore(args.results)
    store.ensure_writable()
    requests = requests_of(grids)
    retry = 0 if args.force else sum(store.status(r.key) == "failed" for r in requests)
    if retry:
        print(f"retrying {retry} run(s) stored as failed in {store.root}")
    work = prepare(grids, store, make_engine(options.engine, options.device), args.force)
    landed: list[str] = []
    try:
        return store, _execute_on(work, args, options, title, store, landed), work.skipped
    except KeyboardInterrupt:
        in_store = sum(store.has_result(r.key) for r in requests)
        raise Interrupted(f"interrupted: {len(landed)} run(s) landed in {store.root} this time, "
                          f"{in_store} of {len(requests)} in the store; run the same command again "
                          f"to go on (stored runs are skipped)") from None


def _execute_on(work, args, options, title, store, landed) -> list[dict]:
    from .progress import RunBar, make_progress
    from .run import driver
    from .run.executors import make_executor
    from .train.core import resolve_device
    from .workload import describe as describe_workload

    metric = getattr(args, "metric", "test_acc_macro")
    bars: dict[str, RunBar] = {}
    # local: one worker per GPU slot on GPUs, else one in this process (a thread if one)
    with make_executor(options, jobs=len(work.jobs) or None) as executor, \
            make_progress(enabled=not args.no_progress) as progress:
        if work.jobs:  # the plan, before anything trains
            stored = store.load()
            stored = stored.to_dict("records") if len(stored) else []
            print("to do: " + describe_workload(work.todo, resolve_device(options.device).type,
                                                work.engine.name, stored, gpus=executor.gpus,
                                                jobs=work.jobs))
        print(f"engine {work.engine.name}, executor {executor.describe()}")
        overall = progress.add_task(title, total=len(work.requests), info="")

        def on_row(req, row, done, total):
            landed.append(req.key)
            if req.key in bars:  # a run that stopped early: its bar ends full, its clock stops
                bars.pop(req.key).finish(row.get("stop_reason") or row.get("status"))
            acc = row.get(metric)
            progress.update(overall, advance=1, info=f"last: {row['task']} {row['status']}"
                            + (f" {metric}={acc:.3f}" if isinstance(acc, float) else ""))

        def bar(grid):
            key = next(iter(grid)).key
            bars[key] = RunBar(progress, grid.describe())
            return bars[key]

        rows = driver.execute(work, store, executor, device=options.device, on_row=on_row,
                              progress_factory=bar, max_retries=options.max_retries)
        progress.update(overall, completed=len(work.requests))
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    from .run.plan import plan

    options = from_args(args)  # checked before anything is planned
    spec = load_spec(args.spec)
    suite, settings = _settings_from_args(args, baseline_only=True)
    grids = plan([spec], settings, *_grid_from_args(args, suite, use_suite_grid=False))
    store, rows, skipped = _execute(grids, args, options, f"run {spec.name}")
    if skipped:
        print(f"already in {store.root}: {skipped} run(s) skipped (use --force to re-run)")
    for row in rows:
        keys = ("status", "test_acc", "test_acc_macro", "test_loss", "train_acc", "epochs_run",
                "params", "wall_s")
        print(f"{spec.name} {row['task']} [{row['setting']}] lr={row['lr']:g} wd={row['weight_decay']:g}: "
              + " ".join(f"{k}={row.get(k):.4g}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
                         for k in keys)
              + (f" error={row['error']}" if row.get("error") else ""))
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _print_scores(frame, suite_name: str, metric: str) -> None:
    """The MAD score table of the bench's specs: the leaderboard's cells (``results.aggregate``)."""
    from .results.leaderboard import LEGEND, build_leaderboard

    lb = build_leaderboard(frame, suite=suite_name, by="task", metric=metric)
    table = _table(title=f"{suite_name}: {metric} (best grid point per setting, mean over settings)")
    table.add_column("spec")
    for col in lb.columns:
        table.add_column(col, justify="right")
    for key in lb.info.index:
        table.add_row(lb.info.loc[key, "spec"], *[lb.cell_text(key, col) for col in lb.columns])
    _console().print(table)
    if not lb.complete:
        _console().print(LEGEND, markup=False)  # "[n]" is text, not rich markup
    for note in lb.notes:
        _console().print(f"note: {note}", markup=False)
    n_failed = int((frame["status"] == "failed").sum())
    if n_failed:
        _console().print(f"{n_failed} failed run(s) left out of the scores (not scored as 0)")


def cmd_bench(args: argparse.Namespace) -> int:
    from .run.plan import plan

    options = from_args(args)  # checked before anything is planned
    specs = [load_spec(s) for s in args.specs]
    suite, settings = _settings_from_args(args, baseline_only=args.baseline_only)
    specs = sweep_widths(suite.grid, specs)  # the suite's width sweep, if it has one
    grids = plan(specs, settings, *_grid_from_args(args, suite, use_suite_grid=True), seeds=args.seeds)
    points = len(grids[0]) if grids else 0
    print(f"{len(specs)} spec(s) x {len(settings)} setting(s) x {points} grid point(s)"
          f" x {len(args.seeds or [None])} seed(s) = {sum(len(g) for g in grids)} run(s)")
    store, rows, skipped = _execute(grids, args, options, f"bench {suite.name}")
    if skipped:
        print(f"{skipped} run(s) already in {store.root}, skipped")
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['spec']} {r['task']} [{r['setting']}]: {r.get('error')}", file=sys.stderr)
    frame = store.load()
    hashes = {s.spec_hash() for s in specs}
    _print_scores(frame[frame["spec_hash"].isin(hashes)], suite.name, args.metric)
    return 1 if failed else 0


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None,
                   help="suite name (mad, mad-quick, mqar, smoke) or YAML path (default: mad when "
                        "training on a GPU, mad-quick otherwise: mad is 396 GPU-sized runs per spec)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a task setting variable, e.g. --set seq_len=256 (repeatable)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the suite's; bench: its lr grid)")
    p.add_argument("--wd", type=float, default=None,
                   help="weight decay (default: the suite's; bench: its weight-decay grid)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the suite's)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="training batch size (default: the suite's)")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--force", action="store_true", help="re-run runs already in the store")
    add_exec_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# -- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="madbench", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; 'ok' or one error per line",
                 description="Check spec files: one line per file, 'ok' or each problem with its field. "
                 "A directory stands for its *.yaml / *.yml / *.json files. Exit 2 if any fails.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec file (YAML / JSON) or directory")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("info", help="per-layer parameters, FLOPs and state size of a spec")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML / JSON)")
    p.add_argument("--vocab-size", type=positive_int, default=16,
                   help="vocabulary size the model is built for (default: 16)")
    p.add_argument("--seq-len", type=positive_int, default=128,
                   help="sequence length for FLOPs and state size (default: 128)")
    p.add_argument("--backbone", choices=["lm", "autoencoder"], default=None,
                   help="build as this backbone (default: the spec's, else lm)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("primitives", help="list registered primitives and their parameters")
    p.set_defaults(func=cmd_primitives)

    p = sub.add_parser("schema", help="print the JSON Schema of spec files",
                 description="Print the JSON Schema of spec files (for editor completion: "
                 "madbench schema > spec.schema.json).")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("run", help="train one spec on one task setting and store the row",
                 description="Train one spec on the baseline setting of one task (--set changes a variable) "
                 "and store the run's row in the results store.")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML / JSON)")
    p.add_argument("--task", required=True, help="task of the suite, e.g. in-context-recall")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the suite's)")
    _add_training_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="every setting x grid point of a suite for each spec",
                 description="Train every setting x lr x wd grid point of a suite for each spec, then print "
                 "per-task scores and the MAD score. Runs already in the store are skipped.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML / JSON)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks of the suite")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="train every run once per seed (default: the suite's one seed)")
    p.add_argument("--baseline-only", action="store_true", help="only each task's baseline setting")
    p.add_argument("--metric", default="test_acc_macro", choices=["test_acc_macro", "test_acc"],
                   help="score: test_acc_macro (MAD's macro accuracy, default) or test_acc (micro)")
    _add_training_args(p)
    p.set_defaults(func=cmd_bench)

    register_results(sub)
    register_tune(sub)
    register_lm(sub)
    for action in sub._choices_actions:  # every --help starts with what the command does
        command = sub.choices[action.dest]
        command.description = command.description or action.help[0].upper() + action.help[1:] + "."
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_device(getattr(args, "device", None))
        return args.func(args)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(str(exc) if isinstance(exc, Interrupted) else "interrupted", file=sys.stderr)
        if argv is None:  # the program: end now, before threads still in torch meet its teardown
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_CODE)
        return EXIT_CODE
    except SpecError as exc:
        for line in exc.format().splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (UsageError, ValueError, FileNotFoundError, PermissionError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
