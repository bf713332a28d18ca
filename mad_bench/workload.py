"""How much training a plan asks for, and about how long it takes, said before it starts.

The bound counts every run at all its epochs (no stop at 0.999 accuracy), so the real time is
shorter where runs stop early. The rate is the one measured for the MAD transformer on one
H200 (BENCHMARKS.md: ``benchmarks/throughput.py``, bf16, training tokens per second over a
whole slice of the protocol, setup included); other specs are slower (Mamba ~2x, Hyena ~3.5x),
other GPUs differ. Where no rate was measured, only the work is reported.
"""
from __future__ import annotations

from typing import Sequence

# (device type, engine) -> training tokens / s of the MAD transformer on an H200
REFERENCE_RATES = {("cuda", "ensemble"): 5.8e6, ("cuda", "plain"): 1.16e6}


def training_tokens(requests: Sequence) -> int:
    """Tokens the plan trains on if no run stops early: examples x length x epochs per run."""
    return sum(r.setting.task_setting.num_train_examples * r.setting.task_setting.seq_len
               * r.training.epochs for r in requests)


def makespan_tokens(job_tokens: Sequence[int], gpus: int) -> int:
    """Tokens the busiest GPU trains when jobs, in order, each go to the GPU that frees first
    (what the executors do): the time the plan takes at one GPU's rate."""
    finish = [0] * max(1, gpus)
    for tokens in job_tokens:
        first = min(range(len(finish)), key=finish.__getitem__)
        finish[first] += tokens
    return max(finish)


def describe(requests: Sequence, device_type: str, engine: str, gpus: int = 1,
             jobs: Sequence[Sequence] | None = None) -> str:
    """One line: runs (in how many ``jobs``, groups of requests), the token bound and, where a
    rate is known, the time it implies on ``gpus`` GPUs (jobs are not split across GPUs)."""
    tokens = training_tokens(requests)
    line = f"{len(requests)} run(s)" + (f" in {len(jobs)} job(s)" if jobs is not None else "")
    line += f" to train: at most {tokens:.3g} training tokens (no early stop)"
    rate = REFERENCE_RATES.get((device_type, engine))
    if rate:
        gpus = max(1, gpus)
        per_job = [training_tokens(j) for j in jobs] if jobs is not None else \
            [training_tokens([r]) for r in requests]
        hours = makespan_tokens(per_job, gpus) / rate / 3600
        where = f" on {gpus} GPUs" if gpus > 1 else ""
        line += (f"; ETA at most {_hours(hours)}{where} at the MAD transformer's measured {engine} "
                 f"rate on an H200 ({rate / 1e6:.2g} M tok/s{' per GPU' if gpus > 1 else ''}; "
                 "other specs are slower)")
    elif device_type == "cuda":
        line += f"; no rate measured for the {engine} engine: the progress bar's ETA follows the first runs"
    else:
        line += "; on a CPU the progress bar's ETA follows the first runs"
    return line


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"
