"""Progress bars (rich) for long work: one bar for the whole benchmark, one per run.

Accuracies are named as in the results store: a run's bar shows ``test_acc`` (micro, what the
trainer stops on), the overall bar the metric the score table uses (``test_acc_macro`` by default).
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


# the trainer's per-epoch names -> the results store's column names
LABELS = {"acc": "test_acc", "loss": "test_loss"}


def make_progress(enabled: bool = True) -> Progress:
    # not a terminal (a log file, CI): no 80-column cut
    console = None if sys.stdout.isatty() else Console(width=250)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), disable=not enabled, transient=False, console=console)


class RunBar:
    """The trainer's progress protocol (``start`` / ``advance``) on a rich task."""

    def __init__(self, progress: Progress, description: str):
        self.progress = progress
        self.task = progress.add_task(description, total=None, info="")

    def start(self, total_steps: int) -> None:
        self.progress.update(self.task, total=total_steps)

    def advance(self, n: int = 1, **info) -> None:
        fields = {}
        if info:
            fields["info"] = " ".join(f"{LABELS.get(k, k)}={v:.3f}" if isinstance(v, float)
                                      else f"{LABELS.get(k, k)}={v}" for k, v in info.items())
        self.progress.update(self.task, advance=n, **fields)

    def finish(self, why: str | None = None) -> None:
        """The run landed: the bar ends full at the steps it ran (a run that stopped early does
        not stay part-filled) and its clock stops."""
        task = next((t for t in self.progress.tasks if t.id == self.task), None)
        if task is None:
            return
        done = task.completed
        fields = {"info": f"{task.fields.get('info', '')} ({why})".strip()} if why and why != "completed" else {}
        self.progress.update(self.task, total=done or 1, completed=done or 1, **fields)
        self.progress.stop_task(self.task)

    def close(self) -> None:
        self.progress.remove_task(self.task)
