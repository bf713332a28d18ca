"""Time every task generator at MAD baseline sizes and at seq_len 1024 (CPU).

    python benchmarks/datagen.py [--repeats 3] [--threads N] [--out benchmarks/results/datagen.json]

Each row: median wall time of ``generate(setting, "train", seed)`` with 12,800 examples
(memorization's baseline uses its own 256 training examples, as in MAD) plus the test
split's 1,280, and the throughput in tokens per second.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mad_bench.configs.tasks import get_task  # noqa: E402
from mad_bench.tasks import generate  # noqa: E402

CASES = [
    # (label, task, kwargs)
    ("baseline", "in-context-recall", dict(vocab_size=16, seq_len=128)),
    ("seq1024", "in-context-recall", dict(vocab_size=16, seq_len=1024)),
    ("baseline", "fuzzy-in-context-recall", dict(vocab_size=16, seq_len=128)),
    ("seq1024", "fuzzy-in-context-recall", dict(vocab_size=16, seq_len=1024)),
    ("vocab128", "fuzzy-in-context-recall", dict(vocab_size=128, seq_len=128)),
    ("baseline", "noisy-in-context-recall", dict(vocab_size=32, seq_len=128)),
    ("seq1024", "noisy-in-context-recall", dict(vocab_size=32, seq_len=1024)),
    ("baseline", "selective-copying", dict(vocab_size=16, seq_len=256)),
    ("seq1024", "selective-copying", dict(vocab_size=16, seq_len=1024, num_tokens_to_copy=96)),
    ("baseline", "compression", dict(vocab_size=16, seq_len=32)),
    ("seq1024", "compression", dict(vocab_size=16, seq_len=1024)),
    ("baseline", "memorization", dict(vocab_size=256, seq_len=32)),
    ("vocab8192", "memorization", dict(vocab_size=8192, seq_len=32)),
    ("seq1024", "memorization", dict(vocab_size=256, seq_len=1024, num_train_examples=12800)),
    ("zoology", "mqar", dict(vocab_size=8192, seq_len=256, num_kv_pairs=16)),
    ("seq1024", "mqar", dict(vocab_size=8192, seq_len=1024, num_kv_pairs=64)),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave default)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "datagen.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    hdr = f"{'task':26s} {'case':10s} {'vocab':>6s} {'seq':>5s} {'N':>6s} {'train s':>8s} {'test s':>7s} {'Mtok/s':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for label, task, kw in CASES:
        s = get_task(task)(**kw)
        generate(s, "train", 0)  # warm-up
        tr, te = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter(); d = generate(s, "train", r); tr.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); generate(s, "test", r); te.append(time.perf_counter() - t0)
        t_tr, t_te = statistics.median(tr), statistics.median(te)
        n, L = d.inputs.shape
        row = dict(case=label, **s.model_dump(), num_examples=n, length=L,
                   train_s=t_tr, test_s=t_te, mtok_per_s=n * L / t_tr / 1e6)
        rows.append(row)
        print(f"{task:26s} {label:10s} {s.vocab_size:6d} {s.seq_len:5d} {n:6d} {t_tr:8.3f} {t_te:7.3f} {row['mtok_per_s']:7.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                machine=platform.machine(), processor=platform.processor(), python=platform.python_version(),
                repeats=args.repeats, created_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
