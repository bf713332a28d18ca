"""Progress bars (rich) for long work: one bar for the whole benchmark, one per run."""
from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def make_progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


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
            fields["info"] = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in info.items())
        self.progress.update(self.task, advance=n, **fields)

    def close(self) -> None:
        self.progress.remove_task(self.task)
