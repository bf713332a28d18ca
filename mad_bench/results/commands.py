"""CLI subcommands that read the results store, ``results``, ``leaderboard``, ``plot`` and
``report``; ``register(subparsers)`` adds them.

Handlers return an exit code; user errors raise ValueError (``madbench`` prints
``error: <message>`` and exits 2)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .aggregate import METRICS

from .choices import BY, FORMATS, PLOT_KINDS  # noqa: F401 - argparse choices


def load_store(results: str):
    """The store's rows; ValueError (exit 2) when there are none, naming any store inside it
    (a fresh clone's ``results/`` holds only the shipped ``results/reference-cpu``)."""
    from .store import ResultsStore

    root = Path(results)
    frame = ResultsStore(root).load()
    if not frame.empty:
        return frame
    inner = sorted(str(p.parent) for p in root.glob("*/runs") if any(p.glob("*.parquet")))
    hint = f", or read the runs in {' / '.join(inner)} (--results {inner[0]})" if inner else ""
    what = "no results directory" if not root.exists() else "no runs in"
    raise ValueError(f"{what} {results!r}: run `madbench run` or `madbench bench` first{hint}")


def cmd_results(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .leaderboard import spec_labels

    frame = load_store(args.results)
    if args.suite:
        frame = frame[frame["suite"] == args.suite]
    if len(frame):
        frame = frame.assign(spec=frame["spec_hash"].map(spec_labels(frame)))  # "zoo-attention d=64"
    cols = ["spec", "suite", "task", "setting", "lr", "weight_decay", "seed", "status", "test_acc",
            "test_acc_macro", "epochs_run", "wall_s"]
    table = Table(title=f"{len(frame)} run(s) in {args.results}")
    for c in cols:
        table.add_column(c)
    for _, row in frame[cols].iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import build_leaderboard

    lb = build_leaderboard(load_store(args.results), suite=args.suite, by=args.by, metric=args.metric)
    text = lb.render(args.format)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out} ({len(lb.info)} row(s), {lb.suite}, by {lb.by})")
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import make_plot, save_figure

    out = args.out or f"{args.kind}.png"
    if Path(out).suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"cannot write {out!r}: use a .png or .svg file name")
    frame = None
    if args.kind != "search-history":
        import pandas as pd

        frames = [load_store(r) for r in args.results]  # --results takes several stores here
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    fig = make_plot(args.kind, frame, suite=args.suite, metric=args.metric, study=args.study,
                    storage=args.storage, x=args.x, corpus=args.corpus, results=args.results[0])
    if args.kind == "proxy":
        from .plots import coverage_mark, proxy_points, spearman

        pts = proxy_points(frame, args.suite, args.metric, args.corpus)
        for row in pts.itertuples(index=False):
            mark = coverage_mark(row.n_tasks, row.tasks_total)
            print(f"{row.spec:<28} MAD score {row.mad_score:.4f}  val_loss {row.val_loss:.4f}  "
                  f"bpb {row.val_bpb:.4f}" + (f"  {mark}" if mark else ""))
        rho = spearman(pts["mad_score"], pts["val_loss"])
        print(f"Spearman rank correlation (MAD score vs val_loss) over {len(pts)} specs: {rho:.3f} "
              "(-1: the higher the score, the lower the loss)")
    path = save_figure(fig, out)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    extra = []
    if args.study:
        from .plots import load_study, search_history

        extra.append((f"Search history: {args.study}", search_history(load_study(args.study, args.storage, args.results))))
    path = write_report(load_store(args.results), args.out, suite=args.suite, metric=args.metric,
                        source=str(args.results), extra_figures=extra)
    print(f"wrote {path}")
    return 0


def _common(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument("--results", nargs="+", default=["results"], metavar="RESULTS",
                       help="results directory (default: results); several: their rows read together "
                            "(e.g. the synthetic and the LM store for --kind proxy)")
    else:
        p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--suite", default=None, help="only this suite (needed when the store holds several)")
    p.add_argument("--metric", default="test_acc_macro", choices=list(METRICS),
                   help="test_acc_macro (MAD's metric, default) or test_acc (micro)")


def register(subparsers) -> None:
    """Add ``results``, ``leaderboard``, ``plot`` and ``report`` to the ``madbench`` subparsers."""
    p = subparsers.add_parser("results", help="what the results store holds, as a table")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--suite", default=None, help="only runs of this suite (default: all)")
    p.set_defaults(func=cmd_results)

    p = subparsers.add_parser("leaderboard", help="specs x tasks (or settings, or sequence mixers) table")
    _common(p)
    p.add_argument("--by", default="task", choices=list(BY),
                   help="task (default): per-task scores + MAD score; setting: per task setting; "
                        "primitive: specs grouped by sequence mixer")
    p.add_argument("--format", default="md", choices=list(FORMATS),
                   help="md (default), csv, html or json")
    p.add_argument("--out", default=None, help="write to FILE (default: stdout)")
    p.set_defaults(func=cmd_leaderboard)

    p = subparsers.add_parser("plot", help="heatmap, accuracy vs difficulty, Pareto front, search "
                                           "history, MQAR accuracy vs width or vs state size, MAD score vs LM loss (proxy)")
    p.add_argument("--kind", required=True, choices=list(PLOT_KINDS), help="which plot")
    _common(p, several=True)
    p.add_argument("--out", default=None, help="FILE.png or FILE.svg (default: KIND.png)")
    p.add_argument("--x", default="params",
                   help="pareto: the x axis, 'params' or any numeric results column (default: params)")
    p.add_argument("--study", default=None, help="search-history: the study's name (as tune / search printed it)")
    p.add_argument("--storage", default=None,
                   help="search-history: Optuna storage, RDB URL (sqlite:///x.db) or journal file "
                        "(default: RESULTS/<study>/journal.log, where tune / search write it)")
    p.add_argument("--corpus", default=None,
                   help="proxy: the lm rows' corpus (needed when they cover several)")
    p.set_defaults(func=cmd_plot)

    p = subparsers.add_parser("report", help="one self-contained HTML page: leaderboards and plots")
    _common(p)
    p.add_argument("--out", required=True, metavar="FILE.html",
                   help="the HTML file to write (one self-contained page), e.g. report.html")
    p.add_argument("--study", default=None, help="also embed this Optuna study's history")
    p.add_argument("--storage", default=None,
                   help="Optuna storage of --study: RDB URL or journal file (default: "
                        "RESULTS/<study>/journal.log)")
    p.set_defaults(func=cmd_report)
