"""One training step of the engine, four ways: eager, CUDA graph, compiled, compiled + graph.

    python benchmarks/step.py --device cuda --archs transformer mamba hyena --out step.json

For each spec at the MAD baseline shape (in-context recall, batch 128, L 128 unless
``--seq-len``; G = 6 members, the lr x wd grid): milliseconds per training step (forward,
backward, AdamW and metrics of every member) timed over replays after warm-up, training
tokens/s (G x 128 x L per step), the one-off set-up of each variant (compile, capture), and
the largest relative difference of each member's parameters after ``--check-steps`` steps
against the eager step from the same start (the compiled step must train the same model).
Prints a table; writes JSON to ``--out``. ``--attention-impl`` sets ``impl`` on every
softmax-attention layer of the specs (attention, sliding-window attention), once per value
given, so one call measures the step with either attention kernel; the parameter differences
are then all against the first impl's first variant (e.g. the Triton step against SDPA's):

    python benchmarks/step.py --archs transformer --variants eager compiled+graph --attention-impl auto triton
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mad_bench import load_spec  # noqa: E402
from mad_bench.configs.primitives.attention import AttentionConfig  # noqa: E402
from mad_bench.shipped import shipped_file  # noqa: E402
from mad_bench.suite import expand, load_suite  # noqa: E402
from mad_bench.train.core import resolve_device  # noqa: E402
from mad_bench.train.ensemble import EngineOptions, build_ensemble  # noqa: E402

GRID = [(1e-4, 0.0), (1e-4, 0.1), (5e-4, 0.0), (5e-4, 0.1), (1e-3, 0.0), (1e-3, 0.1)]
VARIANTS = {"eager": dict(compile=None, capture=False), "graph": dict(compile=None, capture=True),
            "compiled": dict(compile="inductor", capture=False),
            "compiled+graph": dict(compile="inductor", capture=True),
            "compiled+graph+math": dict(compile="inductor", capture=True, sdpa="math")}


def with_attention_impl(spec, impl: str | None):
    """``spec`` with ``impl`` on its softmax-attention layers (unchanged for ``None``)."""
    if impl is None:
        return spec
    data = spec.to_dict()
    for layer, raw in zip(spec.layers, data["layers"]):
        if isinstance(layer, AttentionConfig):
            raw["impl"] = impl
    return load_spec(data)


def make(spec, setting, dev, members, seq_len, variant, batches):
    ts = setting.task_setting.model_copy(update={"num_train_examples": 128 * batches,
                                                 "num_test_examples": 128, "seq_len": seq_len})
    cfgs = [setting.training.model_copy(update={"lr": lr, "weight_decay": wd, "epochs": 50})
            for lr, wd in (GRID * 16)[:members]]
    opts = EngineOptions(**VARIANTS[variant], probe=False)
    with torch.random.fork_rng(devices=[dev]):
        return build_ensemble(spec, ts, cfgs, dev, options=opts)


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--archs", nargs="+", default=["transformer", "mamba", "hyena", "gla", "deltanet", "mlstm"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--members", type=int, nargs="+", default=[6])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--check-steps", type=int, default=4)
    ap.add_argument("--attention-impl", nargs="+", choices=["auto", "triton", "torch"], default=[None],
                    help="impl of the specs' attention layers, each in turn (default: as the spec says)")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of each variant")
    ap.add_argument("--fp32-matmul", default="highest", choices=["highest", "high"],
                    help="torch.set_float32_matmul_precision for the run: 'high' lets fp32 matmuls and the "
                         "kernels' fp32 tl.dot use TF32 (mlstm's fp32 mixer, the chunked kernels' upcast tiles)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_float32_matmul_precision(args.fp32_matmul)
    dev = resolve_device(args.device)
    setting = expand(load_suite("mad"), ["in-context-recall"], baseline_only=True)[0]
    rows = []
    print(f"{'arch':12s} {'attn':6s} {'G':>3s} {'variant':15s} {'setup s':>8s} {'ms/step':>8s} {'Mtok/s':>7s} "
          f"{'x eager':>8s} {'max rel diff':>12s}  notes", flush=True)
    for arch, members in [(a, g) for a in args.archs for g in args.members]:
        ref_flat = None  # the first impl's first variant: every run's parameters are compared to it
        for attn_impl, variant in [(i, v) for i in args.attention_impl for v in args.variants]:
            spec = with_attention_impl(load_spec(str(shipped_file(arch, "architectures"))), attn_impl)
            if variant == args.variants[0]:
                base_ms = None
            row = {"arch": arch, "variant": variant, "members": members, "seq_len": args.seq_len,
                   "attention_impl": attn_impl}
            try:
                t0 = time.perf_counter()
                ens = make(spec, setting, dev, members, args.seq_len, variant, batches=args.check_steps)
                ens.order.copy_(torch.arange(ens.n))
                for _ in range(args.check_steps):  # the same batches from the same start
                    ens.train_prog()
                torch.cuda.synchronize(dev)
                row["setup_s"] = time.perf_counter() - t0
                flat = ens.flat.detach().float().clone()
                if ref_flat is None:
                    ref_flat = flat
                diff = ((flat - ref_flat).norm(dim=1) / ref_flat.norm(dim=1)).max().item()
                for _ in range(3):
                    ens.train_prog()
                torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    ens.train_prog()
                torch.cuda.synchronize(dev)
                ms = (time.perf_counter() - t0) / args.steps * 1e3
                if args.profile:
                    from torch.profiler import ProfilerActivity, profile
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(5):
                            ens.train_prog()
                        torch.cuda.synchronize(dev)
                    print(f"[{arch} {attn_impl or 'spec'} {variant}] top CUDA kernels, 5 steps")
                    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15,
                                                    max_name_column_width=70), flush=True)
                base_ms = base_ms or ms
                tok = members * 128 * args.seq_len / ms * 1e3
                notes = (f"captured={ens.train_prog.captured} compiled={ens.info.compiled}"
                         + (f" compile_failure={ens.info.compile_failure}" if ens.info.compile_failure else "")
                         + (f" graph_breaks={len(ens.info.graph_breaks)} ({ens.info.graph_breaks[0]})"
                            if ens.info.graph_breaks else "")
                         + (f" capture_failure={ens.info.capture_failure}" if ens.info.capture_failure else ""))
                row.update(ms_per_step=ms, mtok_s=tok / 1e6, vs_eager=base_ms / ms, max_rel_diff=diff, notes=notes)
                print(f"{arch:12s} {attn_impl or 'spec':6s} {members:3d} {variant:15s} {row['setup_s']:8.1f} "
                      f"{ms:8.2f} {tok / 1e6:7.2f} {base_ms / ms:7.2f}x {diff:12.2e}  {notes}", flush=True)
                del ens
            except Exception as exc:  # noqa: BLE001 - one failing variant must not end the table
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                print(f"{arch:12s} {attn_impl or 'spec':6s} {variant:15s} ERROR {row['error']}", flush=True)
            torch.cuda.empty_cache()
            rows.append(row)
            if args.out:
                Path(args.out).write_text(json.dumps({"device": device_name(dev),
                                                      "torch": torch.__version__,
                                                      "fp32_matmul": args.fp32_matmul, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
