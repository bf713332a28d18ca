"""Is the ensemble engine's vmapped path right for every shipped architecture, and how fast?

    python benchmarks/engine_check.py --device cuda                     # all specs, bf16 autocast
    python benchmarks/engine_check.py --device cpu --precision bf16 --archs transformer mamba

Part 1 (correctness): for each spec and task baseline, the vmapped forward + backward of a
G-member ensemble against the per-member loop on one batch (:meth:`Ensemble.compare_modes`),
in the run's precision; for specs with attention also under each SDPA backend forced. Prints the
loss and worst gradient relative errors and PASS/FAIL against the engine's tolerance.

Part 2 (``--time``): milliseconds per ensemble training step (eager, forward + backward + AdamW)
for G members at several sequence lengths: how many members one step can carry before the GPU
is full (the case for packing several settings into one ensemble). Writes JSON to --out.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mad_bench import load_spec  # noqa: E402
from mad_bench.train.ensemble import EngineOptions, build_ensemble  # noqa: E402
from mad_bench.suite import expand, load_suite  # noqa: E402
from mad_bench.train.trainer import resolve_device  # noqa: E402

GRID = [(1e-4, 0.0), (1e-4, 0.1), (5e-4, 0.0), (5e-4, 0.1), (1e-3, 0.0), (1e-3, 0.1)]


def sdpa_contexts(names):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    out = {"default": contextlib.nullcontext}
    for n in names:
        b = getattr(SDPBackend, n.upper())
        out[n] = (lambda b=b: sdpa_kernel([b]))
    return out


def ensemble_for(spec, setting, precision, device, G, n_train=256, seq_len=None):
    over = {"num_train_examples": n_train, "num_test_examples": 128}
    if seq_len:
        over["seq_len"] = seq_len
    ts = setting.task_setting.model_copy(update=over)
    cfgs = [setting.training.model_copy(update={"lr": lr, "weight_decay": wd, "precision": precision,
                                                "epochs": 100}) for lr, wd in (GRID * 64)[:G]]
    return build_ensemble(spec, ts, cfgs, device, options=EngineOptions(mode="vmap", probe=False, capture=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--archs", nargs="+", default=None, help="spec names in architectures/ (default: all)")
    ap.add_argument("--tasks", nargs="+", default=["in-context-recall", "selective-copying", "compression"])
    ap.add_argument("--sdpa", nargs="*", default=["flash_attention", "efficient_attention", "cudnn_attention", "math"])
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--time-archs", nargs="+", default=["transformer", "mamba", "hyena", "gla", "deltanet", "mlstm"])
    ap.add_argument("--members", nargs="+", type=int, default=[6, 12, 24, 48])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[128, 1024])
    ap.add_argument("--capture", action="store_true", help="time the CUDA-graph-captured step too")
    ap.add_argument("--profile", nargs="*", default=None, metavar="ARCH",
                    help="print the top CUDA kernels of one ensemble step (L 128, G 6) of these specs")
    ap.add_argument("--fp32-matmul", default="highest", choices=["highest", "high"],
                    help="torch.set_float32_matmul_precision for the run: 'high' lets fp32 matmuls and the "
                         "kernels' fp32 tl.dot use TF32 (mlstm's fp32 mixer, the chunked kernels' upcast tiles)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_float32_matmul_precision(args.fp32_matmul)
    try:
        dev = resolve_device(args.device)
    except ValueError as exc:  # --device cuda on a machine without one: a line, not a traceback
        ap.error(str(exc))
    archs = args.archs or sorted(p.stem for p in (ROOT / "architectures").glob("*.yaml"))
    suite = load_suite("mad")
    baselines = {s.task: s for s in expand(suite, args.tasks, baseline_only=True)}
    ctxs = sdpa_contexts(args.sdpa if dev.type == "cuda" else [])
    report = {"device": str(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"),
              "torch": torch.__version__, "fp32_matmul": args.fp32_matmul,
              "checks": [], "timing": []}
    print(f"{'arch':26s} {'task':18s} {'sdpa':20s} {'loss err':>9s} {'grad err':>9s}  verdict  worst parameter")
    failures = 0
    for arch in archs:
        spec = load_spec(str(ROOT / "architectures" / f"{arch}.yaml"))
        has_attn = any(getattr(l, "type", "") == "attention" for l in spec.layers)
        for task, setting in baselines.items():
            if spec.backbone is not None and spec.backbone != setting.task_setting.backbone:
                continue
            for name, ctx in (ctxs.items() if has_attn else [("default", contextlib.nullcontext)]):
                try:
                    with ctx():
                        torch.manual_seed(0)
                        ens = ensemble_for(spec, setting, args.precision, dev, 6, n_train=16)
                        chk = ens.compare_modes(ens.x_train[:8], ens.y_train[:8])
                    row = {"arch": arch, "task": task, "sdpa": name, "loss_err": chk.loss_err,
                           "grad_err": chk.grad_err, "worst": chk.worst_param, "ok": chk.ok}
                except Exception as exc:  # noqa: BLE001
                    row = {"arch": arch, "task": task, "sdpa": name, "loss_err": float("nan"),
                           "grad_err": float("nan"), "worst": f"{type(exc).__name__}: {str(exc)[:120]}", "ok": False}
                failures += (not row["ok"]) and name == "default"
                report["checks"].append(row)
                print(f"{arch:26s} {task:18s} {name:20s} {row['loss_err']:9.2e} {row['grad_err']:9.2e}  "
                      f"{'PASS' if row['ok'] else 'FAIL':7s}  {row['worst']}", flush=True)
    if args.time:
        print(f"\n{'arch':14s} {'L':>5s} {'G':>4s} {'ms/step':>9s} {'member-steps/s':>15s} {'Mtok/s':>8s}")
        setting = baselines.get("in-context-recall") or next(iter(baselines.values()))
        for arch in args.time_archs:
            spec = load_spec(str(ROOT / "architectures" / f"{arch}.yaml"))
            for L in args.seq_lens:
                for G in args.members:
                    try:
                        ens = ensemble_for(spec, setting, args.precision, dev, G, n_train=128 * 4, seq_len=L)
                        x, y = ens.x_train[:128], ens.y_train[:128]
                        for _ in range(3):
                            ens._step_on(x, y)
                        if dev.type == "cuda":
                            torch.cuda.synchronize()
                        n = 10
                        t0 = time.perf_counter()
                        for _ in range(n):
                            ens._step_on(x, y)
                        if dev.type == "cuda":
                            torch.cuda.synchronize()
                        ms = (time.perf_counter() - t0) / n * 1e3
                        if args.capture and dev.type == "cuda":
                            ens.x_train, ens.y_train = ens.x_train[:128], ens.y_train[:128]
                            ens.n, ens.n_full = 128, 1
                            ens.order = torch.arange(128, device=dev)
                            ens.build_programs()
                            for _ in range(3):
                                ens.train_prog()
                            torch.cuda.synchronize()
                            t0 = time.perf_counter()
                            for _ in range(n):
                                ens.train_prog()
                            torch.cuda.synchronize()
                            ms_g = (time.perf_counter() - t0) / n * 1e3
                            print(f"{'':14s} {L:5d} {G:4d} {ms_g:9.2f}   captured={ens.train_prog.captured}", flush=True)
                        mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0
                    except torch.cuda.OutOfMemoryError:
                        ms, mem = float("nan"), float("nan")
                    del ens
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats(dev)
                    rate = G / ms * 1e3
                    report["timing"].append({"arch": arch, "seq_len": L, "members": G, "ms_per_step": ms,
                                             "peak_gib": mem})
                    print(f"{arch:14s} {L:5d} {G:4d} {ms:9.2f} {rate:15.1f} {rate * 128 * L / 1e6:8.2f}"
                          f"   peak {mem:.1f} GiB", flush=True)
    setting = baselines.get("in-context-recall") or next(iter(baselines.values()))
    for arch in args.profile or []:
        from torch.profiler import ProfilerActivity, profile
        spec = load_spec(str(ROOT / "architectures" / f"{arch}.yaml"))
        ens = ensemble_for(spec, setting, args.precision, dev, 6, n_train=512)
        x, y = ens.x_train[:128], ens.y_train[:128]
        for _ in range(3):
            ens._step_on(x, y)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                ens._step_on(x, y)
            torch.cuda.synchronize()
        print(f"\n[{arch}] top kernels, 5 steps (L 128, G 6)")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=22, max_name_column_width=60))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{failures} default-backend check(s) failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
