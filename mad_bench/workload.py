"""How much training a plan asks for, and about how long it takes, said before it starts.

The bound counts every run at all its epochs (no stop at 0.999 accuracy). The expected figure
scales each run by the share of its epochs that stored runs of the same spec and task actually
trained (early stops measured, from the results store), and times it at the spec's measured
rate: training tokens per second of the ensemble engine on one H200 over a whole slice of the
protocol, setup and evaluation included (BENCHMARKS.md, ``benchmarks/throughput.py``). A spec
with no measured rate is timed at the MAD transformer's, and the line says so. Other GPUs
differ; on a CPU only the work is reported.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

# (device type, engine) -> training tokens / s of the MAD transformer on an H200
REFERENCE_RATES = {("cuda", "ensemble"): 5.8e6, ("cuda", "plain"): 1.16e6}
# spec name -> the ensemble engine's slice rate on an H200 relative to the transformer's
# (BENCHMARKS.md, "Throughput and equivalence": 5.81 / 4.06 / 3.32 / 2.79 / 3.17 / 1.68 M tok/s)
RELATIVE_RATES = {"transformer": 1.0, "gla": 0.70, "deltanet": 0.57, "mamba": 0.48, "mamba-swiglu": 0.48,
                  "mlstm": 0.55, "hyena": 0.29}


def trained_share(rows: Iterable[dict]) -> dict[tuple[str, str], float]:
    """(spec, task) -> mean ``epochs_run / epochs`` over stored ok runs that name their epochs."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        epochs = r.get("epochs")
        if r.get("status") == "ok" and epochs and r.get("epochs_run"):
            acc[(r["spec"], r["task"])].append(min(1.0, r["epochs_run"] / epochs))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def training_tokens(requests: Sequence) -> int:
    """Tokens the plan trains on if no run stops early: examples x length x epochs per run."""
    return sum(r.setting.task_setting.num_train_examples * r.setting.task_setting.seq_len
               * r.training.epochs for r in requests)


def makespan(job_seconds: Sequence[float], gpus: int) -> float:
    """Seconds the busiest GPU works when jobs, in order, each go to the GPU that frees first
    (what the executors do)."""
    finish = [0.0] * max(1, gpus)
    for seconds in job_seconds:
        first = min(range(len(finish)), key=finish.__getitem__)
        finish[first] += seconds
    return max(finish)


def describe(requests: Sequence, device_type: str, engine: str, stored: Iterable[dict] = (),
             gpus: int = 1, jobs: Sequence[Sequence] | None = None) -> str:
    """One line: runs (in how many ``jobs``, groups of requests), the token bound and, where a
    rate is known, the time it implies on ``gpus`` GPUs (jobs are not split across GPUs): at
    most, and expected with the early-stop share measured in ``stored`` rows."""
    tokens = training_tokens(requests)
    line = f"{len(requests)} run(s)" + (f" in {len(jobs)} job(s)" if jobs is not None else "")
    line += f" to train: at most {tokens:.3g} training tokens (no early stop)"
    rate = REFERENCE_RATES.get((device_type, engine))
    if rate:
        share = trained_share(stored)
        unmeasured: set[str] = set()

        def seconds(r, expected: bool) -> float:
            ts = r.setting.task_setting
            n = ts.num_train_examples * ts.seq_len * r.training.epochs
            rel = RELATIVE_RATES.get(r.spec.name) if engine == "ensemble" else 1.0
            if rel is None:
                unmeasured.add(r.spec.name)
                rel = 1.0
            return n * (share.get((r.spec.name, r.setting.task), 1.0) if expected else 1.0) / (rate * rel)

        groups = jobs if jobs is not None else [[r] for r in requests]
        gpus = max(1, gpus)
        bound_s = makespan([sum(seconds(r, False) for r in j) for j in groups], gpus)
        expected_s = makespan([sum(seconds(r, True) for r in j) for j in groups], gpus)
        where = f" on {gpus} GPUs" if gpus > 1 else ""
        line += f"; ETA at most {_hours(bound_s / 3600)}{where}"
        if expected_s < bound_s:
            line += f", expected {_hours(expected_s / 3600)} with the early stops of stored runs"
        line += (f" (measured H200 {engine} rates per spec: the transformer's {rate / 1e6:.2g} M "
                 f"tok/s{' per GPU' if gpus > 1 else ''}")
        if unmeasured:
            line += f"; {', '.join(sorted(unmeasured))} at the transformer's rate, likely slower"
        line += ")"
    elif device_type == "cuda":
        line += f"; no rate measured for the {engine} engine: the progress bar's ETA follows the first runs"
    else:
        line += "; on a CPU the progress bar's ETA follows the first runs"
    return line


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"
