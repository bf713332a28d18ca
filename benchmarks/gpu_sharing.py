"""Do workers that share GPUs train the same runs as one worker, and is it faster?

    python benchmarks/gpu_sharing.py --out OUT_DIR                          # every visible GPU, K=2
    python benchmarks/gpu_sharing.py --jobs-per-gpu 3 --archs transformer mamba --suite mad-quick

Runs the same bench twice into fresh results stores: once with one worker (``--workers 1``),
once with ``--jobs-per-gpu K`` workers on every visible GPU (one worker process per slot, each
pinned to its GPU). While the second runs, ``nvidia-smi`` is sampled for the compute processes
on each GPU. Reports the wall time of each, the most worker processes seen at once on one GPU,
and the largest difference in test accuracy / loss between the two stores' rows (same runs, so
it should be ~0: bf16 kernels may differ in the last bits between processes). Writes
``gpu_sharing.json`` to --out; exit status 1 when a row differs beyond --tol, a run failed, or
no GPU ever held two workers at once (with K >= 2 and enough jobs).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_gpus(stop: threading.Event, seen: list) -> None:
    """Every 0.5 s: compute processes per GPU (by UUID), as nvidia-smi lists them."""
    while not stop.is_set():
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True)
        rows = [line.split(", ") for line in out.stdout.strip().splitlines() if line.strip()]
        seen.append({"t": time.time(), "per_gpu": dict(Counter(r[0] for r in rows)),
                     "mib": sum(float(r[2]) for r in rows if len(r) > 2 and r[2].strip().isdigit())})
        stop.wait(0.5)


def bench(args, results: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "mad_bench.cli", "bench",
           *[str(ROOT / "architectures" / f"{a}.yaml") for a in args.archs], "--suite", args.suite,
           "--device", "cuda", "--results", str(results), "--no-progress", *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    wall = time.time() - t0
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench {' '.join(extra)} exited {proc.returncode}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["transformer", "hyena"],
                    help="shipped specs (default: transformer hyena)")
    ap.add_argument("--suite", default="mad-quick", help="suite (default: mad-quick)")
    ap.add_argument("--jobs-per-gpu", type=int, default=2, help="workers per GPU (default: 2)")
    ap.add_argument("--tol", type=float, default=0.02,
                    help="largest test accuracy difference accepted (default: 0.02)")
    ap.add_argument("--out", default="gpu-sharing", help="output folder (default: gpu-sharing)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from mad_bench.run.executors.gpus import visible_gpus
    from mad_bench.results import ResultsStore

    gpus = visible_gpus()
    one = bench(args, out / "one-worker", ["--workers", "1"])
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=sample_gpus, args=(stop, seen), daemon=True)
    sampler.start()
    try:
        shared = bench(args, out / "shared", ["--jobs-per-gpu", str(args.jobs_per_gpu)])
    finally:
        stop.set()
        sampler.join(5)
    a = ResultsStore(out / "one-worker").load().set_index("run_key").sort_index()
    b = ResultsStore(out / "shared").load().set_index("run_key").sort_index()
    same_runs = list(a.index) == list(b.index)
    both = a.index.intersection(b.index)
    diff_acc = float((a.loc[both, "test_acc"] - b.loc[both, "test_acc"]).abs().max())
    diff_loss = float((a.loc[both, "test_loss"] - b.loc[both, "test_loss"]).abs().max())
    failed = int((a["status"] == "failed").sum() + (b["status"] == "failed").sum())
    most = max((max(s["per_gpu"].values(), default=0) for s in seen), default=0)
    report = {"gpus": gpus, "jobs_per_gpu": args.jobs_per_gpu, "archs": args.archs,
              "suite": args.suite, "runs": len(a), "wall_s_one_worker": one, "wall_s_shared": shared,
              "speedup": one / shared if shared else None, "same_runs": same_runs,
              "max_abs_diff_test_acc": diff_acc, "max_abs_diff_test_loss": diff_loss,
              "failed_runs": failed, "most_workers_on_one_gpu": most,
              "peak_mib_all_gpus": max((s["mib"] for s in seen), default=0.0)}
    (out / "gpu_sharing.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    ok = same_runs and failed == 0 and diff_acc <= args.tol
    if args.jobs_per_gpu >= 2 and len(a) >= 2 * len(gpus):
        ok = ok and most >= 2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
