"""Does the engine's training step compile as ONE graph for every shipped spec?

    python benchmarks/compile_check.py --device cuda                  # inductor, the specs' own impls
    python benchmarks/compile_check.py --device cpu --archs hyena     # aot_eager, torch paths

torch.compile of the engine's step silently runs eagerly wherever dynamo breaks the graph inside
the vmapped forward (an ``autograd.Function`` under vmap, a module tied at several paths, cuDNN's
RNNs): the step is then correct but unfused, which the step times show only as a small gain
over eager. For each spec this builds the engine (G members, in-context recall's baseline at a
small size), compiles its forward + loss (:meth:`Ensemble._forward_loss`, what the engine
compiles) with ``fullgraph=True``, runs forward and backward, and compares the gradients with
the eager step's. A graph break fails with dynamo's reason. Prints a table; writes JSON.
On the CPU the layers run their torch paths (``impl: torch``; the Triton interpreter cannot be
traced); on CUDA their own (``auto``), with inductor.
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
from mad_bench.suite import expand, load_suite  # noqa: E402
from mad_bench.train.core import resolve_device  # noqa: E402
from mad_bench.train.ensemble import EngineOptions, build_ensemble  # noqa: E402


def with_impl(spec, impl: str):
    """``spec`` with ``impl`` set on every layer whose config has one."""
    layers = [layer.model_copy(update={"impl": impl}) if "impl" in type(layer).model_fields else layer
              for layer in spec.layers]
    return spec.model_copy(update={"layers": layers})


def check(name: str, device: torch.device, backend: str, impl: str, G: int) -> dict:
    spec = load_spec(str(ROOT / "architectures" / f"{name}.yaml"))
    if impl != "auto":
        spec = with_impl(spec, impl)
    setting = expand(load_suite("mad"), ["in-context-recall"], baseline_only=True)[0]
    ts = setting.task_setting.model_copy(update={"num_train_examples": 64, "num_test_examples": 32})
    cfgs = [setting.training.model_copy(update={"lr": 1e-3 * (g + 1), "batch_size": 16}) for g in range(G)]
    ens = build_ensemble(spec, ts, cfgs, device, options=EngineOptions(probe=True, capture=False, compile="off"))
    row = dict(arch=name, members=G, backend=backend, impl=impl)
    if ens.info.mode != "vmap":  # the engine's per-member loop: not this check's business
        return {**row, "ok": None, "reason": f"the engine loops over members: {ens.info.fallback_reason}"}
    x, y = ens.x_train[:16], ens.y_train[:16]

    def grads(fn):
        total, _, _ = fn(x, y)
        return torch.autograd.grad(total, ens.leaves, allow_unused=True)

    ref = grads(ens._forward_loss)
    torch._dynamo.reset()
    t0 = time.perf_counter()
    try:
        got = grads(torch.compile(ens._forward_loss, backend=backend, fullgraph=True, dynamic=False))
    except Exception as exc:  # noqa: BLE001 - the reason is the row
        return {**row, "ok": False, "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    err = max(((a - b).norm() / b.norm().clamp_min(1e-30)).item()
              for a, b in zip(got, ref) if a is not None and b is not None)
    tol = 1e-2 if device.type == "cuda" else 1e-4
    return {**row, "ok": err <= tol, "compile_s": round(time.perf_counter() - t0, 1), "grad_err": err,
            "reason": "" if err <= tol else f"gradient error {err:.2e} > {tol}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--archs", nargs="+", default=None, help="spec names in architectures/ (default: all)")
    ap.add_argument("--backend", default=None, help="torch.compile backend (default: inductor on CUDA, "
                                                    "aot_eager on the CPU)")
    ap.add_argument("--impl", default=None, choices=["auto", "torch", "triton"],
                    help="the layers' impl (default: auto on CUDA, torch on the CPU)")
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        dev = resolve_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    backend = args.backend or ("inductor" if dev.type == "cuda" else "aot_eager")
    impl = args.impl or ("auto" if dev.type == "cuda" else "torch")
    archs = args.archs or sorted(p.stem for p in (ROOT / "architectures").glob("*.yaml"))
    rows = []
    print(f"{'arch':28s} {'verdict':8s} {'compile s':>9s} {'grad err':>9s}  reason", flush=True)
    for name in archs:
        try:
            row = check(name, dev, backend, impl, args.members)
        except Exception as exc:  # noqa: BLE001 - a spec that does not build is a row too
            row = dict(arch=name, ok=False, reason=f"{type(exc).__name__}: {str(exc)[:200]}")
        rows.append(row)
        verdict = {True: "OK", False: "BREAKS", None: "LOOP"}[row["ok"]]
        print(f"{name:28s} {verdict:8s} {row.get('compile_s', float('nan')):9.1f} "
              f"{row.get('grad_err', float('nan')):9.1e}  {row['reason'][:150]}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"device": str(dev), "torch": torch.__version__, "rows": rows},
                                                 indent=2))
    vmapped = [r for r in rows if r["ok"] is not None]
    print(f"{sum(bool(r['ok']) for r in vmapped)} of {len(vmapped)} vmapped specs compile as one graph "
          f"({len(rows) - len(vmapped)} train in the per-member loop)")
    return 0 if all(r["ok"] for r in vmapped) else 1


if __name__ == "__main__":
    sys.exit(main())
