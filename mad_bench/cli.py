"""The ``madbench`` command. Each subcommand is a small function over the library API."""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from .spec import SpecError

console = Console() if sys.stdout.isatty() else Console(width=160)


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


# -- spec commands -----------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    from .spec import load_spec

    failed = 0
    for path in args.specs:
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
    from .info import summarize
    from .spec import load_spec

    spec = load_spec(args.spec)
    rows, total = summarize(spec, args.vocab_size, args.seq_len, backbone=args.backbone)
    table = Table(title=f"{spec.name}  (d_model {spec.d_model}, vocab {args.vocab_size}, "
                        f"seq_len {args.seq_len})")
    for col in ("layer", "primitive", "kind", "params", "FLOPs/token (fwd)", "state / sequence"):
        table.add_column(col, justify="right" if col not in ("primitive", "kind") else "left")
    for r in rows + [total]:
        table.add_row(r.index, r.primitive, r.kind, f"{r.params:,}", _si(r.flops_per_token),
                      _bytes(r.state_bytes), end_section=r is rows[-1])
    console.print(table)
    console.print("state: recurrent state or KV cache per sequence at fp32 for seq_len tokens")
    return 0


def cmd_primitives(args: argparse.Namespace) -> int:
    from .primitives import REGISTRY

    table = Table(title="registered primitives")
    for col in ("name", "kind", "parameters (defaults)", "what"):
        table.add_column(col)
    for kind in ("sequence", "channel"):
        for name, entry in sorted(REGISTRY.items()):
            if entry.kind != kind:
                continue
            params = ", ".join(f"{k}={f.default!r}" for k, f in entry.config.model_fields.items()
                               if k != "type")
            table.add_row(name, kind, params, entry.doc)
    console.print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .spec import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))
    return 0


# -- training commands -------------------------------------------------------------------

def _settings_from_args(args, baseline_only: bool):
    from .suite import expand, load_suite, parse_overrides

    suite = load_suite(args.suite)
    train_overrides = {}
    for field in ("epochs", "batch_size", "seed"):
        value = getattr(args, field, None)
        if value is not None:
            train_overrides[field] = value
    tasks = [args.task] if getattr(args, "task", None) else (getattr(args, "tasks", None) or None)
    return suite, expand(suite, tasks=tasks, overrides=parse_overrides(args.set),
                         train_overrides=train_overrides, baseline_only=baseline_only)


def _grid_from_args(args, suite, use_suite_grid: bool):
    if args.lr is not None or args.wd is not None:
        lrs = [args.lr] if args.lr is not None else (suite.grid.lr if use_suite_grid else [None])
        wds = [args.wd] if args.wd is not None else (suite.grid.weight_decay if use_suite_grid else [None])
        return [(lr, wd) for lr in lrs for wd in wds]
    if use_suite_grid or len(suite.grid.points()) == 1:  # a one-point grid is the suite's choice
        return suite.grid.points()
    return None


def _resolve_grid(grid, settings):
    """Fill None entries of a partial CLI grid from each setting's training config."""
    if grid is None:
        return None
    base = settings[0].training
    return [(lr if lr is not None else base.lr, wd if wd is not None else base.weight_decay)
            for lr, wd in grid]


def _execute(requests, args, title: str):
    from .execute import make_executor
    from .progress import RunBar, make_progress
    from .results import ResultsStore
    from .runner import execute

    store = ResultsStore(args.results)
    store.ensure_writable()
    workers = args.workers or (1 if args.executor == "local" else None)
    with make_executor(args.executor, parallel=workers, in_process=workers == 1,
                       address=args.address, cpus_per_trial=args.cpus_per_trial,
                       gpus_per_trial=args.gpus_per_trial, device=args.device) as executor, \
            make_progress(enabled=not args.no_progress) as progress:
        print(f"engine {args.engine}, executor {executor.describe()}")
        overall = progress.add_task(title, total=len(requests), info="")

        def on_row(req, row, done, total):
            acc = row.get("test_acc")
            progress.update(overall, advance=1, info=f"last: {row['task']} {row['status']}"
                            + (f" acc={acc:.3f}" if isinstance(acc, float) else ""))

        def bar(req):
            return RunBar(progress, req.describe())

        rows, skipped = execute(requests, store, device=args.device, force=args.force,
                                on_row=on_row, progress_factory=bar, engine=args.engine,
                                executor=executor)
        progress.update(overall, completed=len(requests))
    return store, rows, skipped


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import plan
    from .spec import load_spec

    spec = load_spec(args.spec)
    suite, settings = _settings_from_args(args, baseline_only=True)
    grid = _resolve_grid(_grid_from_args(args, suite, use_suite_grid=False), settings)
    requests = plan([spec], settings, grid=grid)
    store, rows, skipped = _execute(requests, args, f"run {spec.name}")
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
    table = Table(title=f"{suite_name}: {metric} (best grid point per setting, mean over settings)")
    table.add_column("spec")
    for col in lb.columns:
        table.add_column(col, justify="right")
    for key in lb.info.index:
        table.add_row(lb.info.loc[key, "spec"], *[lb.cell_text(key, col) for col in lb.columns])
    console.print(table)
    if not lb.complete:
        console.print(LEGEND)


def cmd_bench(args: argparse.Namespace) -> int:
    from .runner import plan
    from .spec import load_spec

    specs = [load_spec(s) for s in args.specs]
    suite, settings = _settings_from_args(args, baseline_only=args.baseline_only)
    specs = suite.grid.widths(specs)  # the suite's width sweep, if it has one
    grid = _resolve_grid(_grid_from_args(args, suite, use_suite_grid=True), settings)
    requests = plan(specs, settings, grid=grid, seeds=args.seeds)
    print(f"{len(specs)} spec(s) x {len(settings)} setting(s) x {len(grid)} grid point(s)"
          f" x {len(args.seeds or [None])} seed(s) = {len(requests)} run(s)")
    store, rows, skipped = _execute(requests, args, f"bench {suite.name}")
    if skipped:
        print(f"{skipped} run(s) already in {store.root}, skipped")
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['spec']} {r['task']} [{r['setting']}]: {r.get('error')}", file=sys.stderr)
    frame = store.load()
    hashes = {s.spec_hash() for s in specs}
    _print_scores(frame[frame["spec_hash"].isin(hashes)], suite.name, args.metric)
    return 1 if failed else 0


def cmd_results(args: argparse.Namespace) -> int:
    from .results import ResultsStore

    frame = ResultsStore(args.results).load()
    if frame.empty:
        print(f"no results in {args.results} yet: run `madbench run` or `madbench bench`")
        return 0
    if args.suite:
        frame = frame[frame["suite"] == args.suite]
    cols = ["spec", "suite", "task", "setting", "lr", "weight_decay", "seed", "status", "test_acc",
            "test_acc_macro", "epochs_run", "wall_s"]
    table = Table(title=f"{len(frame)} run(s) in {args.results}")
    for c in cols:
        table.add_column(c)
    for _, row in frame[cols].iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    return 0


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="mad", help="suite name or path (default: mad)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a task setting variable, e.g. --set seq_len=256 (repeatable)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--wd", type=float, default=None, help="weight decay")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--force", action="store_true", help="re-run runs already in the store")
    p.add_argument("--workers", type=int, default=None,
                   help="jobs at once (default: local 1, in this process; ray: what fits)")
    p.add_argument("--engine", choices=["plain", "ensemble"], default="plain",
                   help="plain: one run at a time; ensemble: the lr x wd grid of a setting "
                        "trained as one batched model (same results, fewer launches on a GPU)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (default) or Ray tasks (with --address: a cluster)")
    p.add_argument("--address", default=None, help="Ray cluster: auto | HOST:PORT (default: embedded)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs per job")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="Ray: GPUs per job; fractions pack several jobs per GPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# -- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="madbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; 'ok' or one error per line")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("info", help="per-layer parameters, FLOPs and state size of a spec")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--vocab-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--backbone", choices=["lm", "autoencoder"], default=None)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("primitives", help="list registered primitives and their parameters")
    p.set_defaults(func=cmd_primitives)

    p = sub.add_parser("schema", help="print the JSON Schema of spec files")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("run", help="train one spec on one task setting and store the row")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, default=None)
    _add_training_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="every setting x grid point of a suite for each spec")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks of the suite")
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--baseline-only", action="store_true", help="only each task's baseline setting")
    p.add_argument("--metric", default="test_acc_macro", choices=["test_acc_macro", "test_acc"])
    _add_training_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("results", help="what the results store holds, as a table")
    p.add_argument("--results", default="results")
    p.add_argument("--suite", default=None)
    p.set_defaults(func=cmd_results)

    from .results.commands import register as register_results
    register_results(sub)

    from .tune.commands import register as register_tune
    register_tune(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
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
