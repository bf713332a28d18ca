"""How work runs: the execution options of ``run``, ``bench``, ``tune`` and ``search``,
defined here once (:class:`ExecOptions`), added to a command's parser by
:func:`add_arguments` and read back from its namespace by :func:`from_args`.

Values are checked where they are made (each error names the option, the value and what is
valid); what depends on the machine (GPUs seen, a Ray cluster) is checked by the executor.
Imports nothing heavy: ``madbench --help`` must not import torch.
"""
from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from typing import Any

from ..argtypes import positive_int

ENGINES = ("auto", "plain", "ensemble")
EXECUTORS = ("local", "ray")
DEVICE_FORMS = "auto, cpu, cuda, cuda:N, mps"


def check_choice(flag: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{flag}: unknown value {value!r} ({hint}valid: {', '.join(valid)})")


@dataclass(frozen=True)
class ExecOptions:
    device: str | None = "auto"
    engine: str = "auto"
    """auto | plain | ensemble (:func:`mad_bench.run.engines.make_engine`)."""
    executor: str | None = None
    """local | ray; None: ray where an ``address`` is given, else local."""
    address: str | None = None
    workers: int | None = None
    """Jobs at once (None: one per GPU slot on GPUs; else local: ``in_process`` decides, Ray: what fits)."""
    in_process: bool | None = None
    """Local: jobs in threads of the driver (True) or spawned processes (False); None: a
    thread where there is one worker, processes otherwise."""
    max_retries: int = 2
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    jobs_per_gpu: int | None = None
    engine_options: Any = None
    """The ensemble engine's EngineOptions (library use; None: the defaults)."""

    def __post_init__(self):
        check_choice("--engine", self.engine, ENGINES)
        if self.executor is not None:
            check_choice("--executor", self.executor, EXECUTORS)
        if self.address and self.executor == "local":
            raise ValueError(f"--address {self.address}: names a Ray cluster, not valid with "
                             "--executor local (use --executor ray, or --address alone)")
        for flag, value in (("--workers", self.workers), ("--jobs-per-gpu", self.jobs_per_gpu)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} {value}: not valid (valid: 1 or more)")
        if self.max_retries < 0:
            raise ValueError(f"--max-retries {self.max_retries}: not valid (valid: 0 or more)")
        if not self.cpus_per_job > 0:
            raise ValueError(f"--cpus-per-trial {self.cpus_per_job:g}: not valid (valid: > 0)")
        if not self.gpus_per_job >= 0:
            raise ValueError(f"--gpus-per-trial {self.gpus_per_job:g}: not valid (valid: 0 or more)")
        if self.jobs_per_gpu is not None and self.gpus_per_job and \
                abs(self.gpus_per_job * self.jobs_per_gpu - 1) > 1e-6:
            raise ValueError(f"--jobs-per-gpu {self.jobs_per_gpu} and --gpus-per-trial "
                             f"{self.gpus_per_job:g} disagree (give one: K jobs per GPU is 1/K GPU per job)")

    @property
    def executor_kind(self) -> str:
        return self.executor or ("ray" if self.address else "local")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The execution options, the same on every command that trains."""
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", help=f"{' | '.join(DEVICE_FORMS.split(', '))} "
                   "(default: auto, a GPU if there is one)")
    g.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto (default): ensemble on a GPU, plain elsewhere; plain: one run at a time; "
                        "ensemble: each lr x wd grid trained as one batched model (same results per "
                        "run, 3-5x the throughput on a GPU)")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="local processes / threads or Ray tasks (default: local; ray with --address)")
    g.add_argument("--address", default=None, help="Ray cluster: auto | HOST:PORT (default: embedded)")
    g.add_argument("--workers", "--parallel", dest="workers", type=positive_int, default=None, metavar="N",
                   help="jobs at once (default: training on GPUs, one worker per GPU x "
                        "--jobs-per-gpu, each pinned to its GPU; ray: what fits; else bench / run: "
                        "1, in this process, tune / search: half the cores)")
    g.add_argument("--in-process", action="store_true", default=None,
                   help="local executor: jobs in threads of this process, no worker processes")
    g.add_argument("--jobs-per-gpu", type=positive_int, default=None, metavar="K",
                   help="workers sharing one GPU (default: 1; ray: --gpus-per-trial 1/K); needs "
                        "a CUDA device")
    g.add_argument("--cpus-per-trial", dest="cpus_per_job", type=float, default=1.0, metavar="N",
                   help="Ray: CPUs per job (default: 1)")
    g.add_argument("--gpus-per-trial", dest="gpus_per_job", type=float, default=0.0, metavar="F",
                   help="GPUs per job; fractions pack several jobs per GPU (ray: over every GPU "
                        "of every node; local: 1/K is --jobs-per-gpu K) (default: 0)")
    g.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="retries of a job whose worker died (default: 2)")


def from_args(args: argparse.Namespace, in_process: bool | None = None) -> ExecOptions:
    """The namespace's execution options; ``in_process``: the command's default for
    ``--in-process`` (tune / search: False, trials in processes)."""
    return ExecOptions(device=args.device, engine=args.engine, executor=args.executor,
                       address=args.address, workers=args.workers,
                       in_process=args.in_process if args.in_process is not None else in_process,
                       max_retries=args.max_retries, cpus_per_job=args.cpus_per_job,
                       gpus_per_job=args.gpus_per_job, jobs_per_gpu=args.jobs_per_gpu)


TRAINING_OVERRIDES = ("epochs", "batch_size", "seed")
"""Training fields a command line may set for every run (each command adds its own flags)."""


def settings_from_args(args: argparse.Namespace, suite, tasks: list[str] | None, baseline_only: bool):
    """The suite's settings of ``tasks`` (None: all) with the command line's ``--set``
    variables and training overrides (``--epochs``, ``--batch-size``, ``--seed``)."""
    from ..suite import expand, parse_overrides

    training = {f: getattr(args, f) for f in TRAINING_OVERRIDES if getattr(args, f, None) is not None}
    return expand(suite, tasks=tasks, overrides=parse_overrides(args.set), train_overrides=training,
                  baseline_only=baseline_only)
