"""GPU check of the chunk_gla (two-level) and gated delta rule (chunked WY) Triton kernels.

Why: Triton on Hopper has miscompiled gated chunked backward kernels before (DESIGN.md, section
3), so the CPU-interpreter tests are not enough. For every shape of the kernel benchmark's
``mad`` and ``long`` sets (H 8 heads, K = V = D / 8; q, k, v in fla's ``[B, L, H, d]`` storage
passed as ``[B, H, L, d]`` views) and for bf16 and fp32 inputs, this compares the output, the
final state and the gradients of every input (q, k, v, gates, beta, initial state) with an fp64
torch reference (max |a - b| / max |b|), and times forward+backward of our kernels beside fla's
(when installed; its first call, autotuning included, is timed apart as ``setup_s``).
Variants timed beside the defaults (``triton``): chunks of 32 / 64 (``triton_bt32`` / ``_bt64``),
the previous per-key GLA kernel (``triton_seq``), the step-by-step delta rule
(``triton_recurrent``); ``vs_fla`` is the default's time over fla's.
``--dot-operands fp32 input`` gives each 16-bit chunk_gla shape one row per two-level
``DOT_OPERANDS`` mode (column ``dot_operands``; the ``input`` rows re-run only the two-level
variants, and fla is timed once), to measure whether 16-bit dot operands close the gap to fla.

    python benchmarks/check_gla_gdr.py --out "$OUT/check_gla_gdr.csv"

Exit status 1 when any error exceeds its tolerance (fp32 1e-3, bf16 3e-2: the kernels compute in
fp32, their dots IEEE fp32 at torch's default matmul precision or TF32 with ``--fp32-matmul high``,
or on 16-bit operands with ``--dot-operands input``;
fp16 1e-2, for CPU runs, where bf16 is dropped). Rows are written as they finish (atomically).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1:][:1] == ["cpu"]:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mad_bench.ops.gated_delta_rule import gated_delta_rule  # noqa: E402
from mad_bench.ops.gated_delta_rule.triton import gated_delta_rule_triton  # noqa: E402
from mad_bench.ops.gla import chunk_gla, two_level  # noqa: E402

SHAPES = {
    "mad": [(128, L, 128) for L in (128, 256, 512, 1024)],
    "long": [(8, L, 1024) for L in (2048, 4096, 8192, 16384)],
    "tiny": [(1, 37, 128)],  # CPU smoke run of this script (--device cpu, the interpreter)
}
HEADS = 8
TOL = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}  # float16: CPU runs


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="mad,long", help="comma-separated: mad, long, tiny")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cpu: the Triton interpreter, checks only (a smoke run at --shapes tiny)")
    p.add_argument("--ops", default="chunk_gla,gated_delta_rule")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--dot-operands", nargs="+", default=["fp32"], choices=two_level.DOT_OPERAND_MODES,
                   help="chunk_gla rows (16-bit inputs) per two-level DOT_OPERANDS mode: fp32 "
                        "(the default numerics) and/or input (dots on 16-bit operands)")
    p.add_argument("--fp32-matmul", default="highest", choices=["highest", "high"],
                   help="torch.set_float32_matmul_precision: 'high' makes the fp32 dot mode TF32, not IEEE")
    p.add_argument("--no-check", action="store_true", help="time only (skip the fp64 reference)")
    p.add_argument("--no-fla", action="store_true")
    p.add_argument("--time-limit", type=float, default=540.0, help="start no new row after this (s)")
    p.add_argument("--out", default=os.path.join(os.environ.get("OUT", "benchmarks/results"),
                                                 "check_gla_gdr.csv"))
    return p.parse_args()


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _bench(fn, args, grads_of) -> float:
    """Median ms of forward + backward (``triton.testing.do_bench``)."""
    from triton.testing import do_bench

    def step():
        for i in grads_of:
            args[i].grad = None
        outs = fn(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        sum((o.float() * 1e-3).sum() for o in outs).backward()

    return do_bench(step, warmup=25, rep=100)


def _leaf(t):
    return t.detach().clone().requires_grad_(True)


# ----------------------------------------------------------------------------- inputs / ops
def _gla_inputs(B, L, D, dtype, dev):
    d = D // HEADS
    q, k, v = (torch.randn(B, L, HEADS, d, device=dev, dtype=dtype) for _ in range(3))
    g = F.logsigmoid(2 * torch.randn(B, L, HEADS, d, device=dev)) / 16  # GLA's gate
    s0 = torch.randn(B, HEADS, d, d, device=dev) * 0.1
    return [_leaf(t) for t in (q, k, v, g, s0)]


def _gla_ours(block_size=None):
    def run(q, k, v, g, s0):
        T = [t.transpose(1, 2) for t in (q, k, v, g)]
        return chunk_gla(*T, None, s0, True, impl="triton", block_size=block_size)
    return run


def _gla_seq(q, k, v, g, s0):
    """The previous per-key kernel (one program per sequence), for comparison."""
    from mad_bench.ops.gla.triton import chunked_linear_attention_op

    T = [t.transpose(1, 2) for t in (q, k, v, g)]
    return chunked_linear_attention_op(*T, s0, q.shape[-1] ** -0.5, True, None)


def _gla_ref(q, k, v, g, s0):
    T = [t.transpose(1, 2) for t in (q, k, v, g)]
    return chunk_gla(*T, None, s0, True, impl="torch")


def _gla_fla(q, k, v, g, s0):
    from fla.ops.gla import chunk_gla as fla_gla

    o, sL = fla_gla(q, k, v, g, initial_state=s0, output_final_state=True)
    return o.transpose(1, 2), sL


def _gdr_inputs(B, L, D, dtype, dev):
    d = D // HEADS
    q = torch.randn(B, L, HEADS, d, device=dev, dtype=dtype)
    k = F.normalize(torch.randn(B, L, HEADS, d, device=dev), dim=-1).to(dtype)
    v = torch.randn(B, L, HEADS, d, device=dev, dtype=dtype)
    beta = torch.sigmoid(torch.randn(B, L, HEADS, device=dev)).to(dtype)
    g = -torch.empty(B, L, HEADS, device=dev).uniform_(0.003, 0.3)
    s0 = torch.randn(B, HEADS, d, d, device=dev) * 0.1
    return [_leaf(t) for t in (q, k, v, beta, g, s0)]


def _gdr(chunked, block_size=None):
    def run(q, k, v, beta, g, s0):
        T = [t.transpose(1, 2) for t in (q, k, v, beta, g)]
        return gated_delta_rule_triton(*T, q.shape[-1] ** -0.5, s0, chunked=chunked,
                                       block_size=block_size)
    return run


def _gdr_ref(q, k, v, beta, g, s0):
    T = [t.transpose(1, 2) for t in (q, k, v, beta, g)]
    return gated_delta_rule(*T, q.shape[-1] ** -0.5, s0, True, chunk_size=64, impl="torch")


def _gdr_fla(q, k, v, beta, g, s0):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_gdr

    o, sL = fla_gdr(q, k, v, g, beta, scale=q.shape[-1] ** -0.5, initial_state=s0,
                    output_final_state=True)
    return o.transpose(1, 2), sL


OPS = {
    "chunk_gla": dict(make=_gla_inputs, ours={"triton": _gla_ours(), "triton_bt32": _gla_ours(32),
                            "triton_seq": _gla_seq}, ref=_gla_ref, fla=_gla_fla,
                      names=["q", "k", "v", "log_g", "h0"],
                      dot_operands=("triton", "triton_bt32")),  # the impls under the switch
    "gated_delta_rule": dict(make=_gdr_inputs,
                             ours={"triton": _gdr(True), "triton_bt32": _gdr(True, 32),
                                   "triton_bt64": _gdr(True, 64), "triton_recurrent": _gdr(False)},
                             ref=_gdr_ref, fla=_gdr_fla,
                             names=["q", "k", "v", "beta", "log_g", "h0"]),
}


# ----------------------------------------------------------------------------- main
def _check(fn, ref_outs, ref_grads, ins, gouts):
    outs = fn(*ins)
    errs = {"o": rel_err(outs[0], ref_outs[0]), "final_state": rel_err(outs[1], ref_outs[1])}
    grads = torch.autograd.grad(outs, ins, [g.to(o.dtype) for g, o in zip(gouts, outs)])
    for name, a, b in zip(OPS_NAMES, grads, ref_grads):
        errs["d" + name] = rel_err(a, b)
    return errs


def _write(rows, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


OPS_NAMES: list[str] = []


def _cases(a):
    """``(op_name, set_name, (B, L, D), dt_name, mode)`` per row; ``mode`` is the two-level GLA
    kernels' ``DOT_OPERANDS`` (None for ops without the switch; fp32 inputs ignore it: one row)."""
    for op_name in a.ops.split(","):
        for set_name in a.shapes.split(","):
            for shape in SHAPES[set_name]:
                for dt_name in a.dtypes.split(","):
                    if not OPS[op_name].get("dot_operands"):
                        modes = [None]
                    elif dt_name == "float32":
                        modes = ["fp32"]
                    else:
                        modes = list(dict.fromkeys(a.dot_operands))
                    for mode in modes:
                        yield op_name, set_name, shape, dt_name, mode


def main():
    global OPS_NAMES
    a = _parse()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda needs a CUDA GPU")
    torch.set_float32_matmul_precision(a.fp32_matmul)
    dev = torch.device(a.device)
    if a.device == "cpu":
        a.no_fla = True
        # the interpreter's dots on bf16 operands are wrong (it multiplies the raw bits)
        a.dtypes = ",".join(d for d in a.dtypes.split(",") if d != "bfloat16") or "float32"
    t_start = time.perf_counter()
    rows, failed = [], []
    fla_ms = {}  # fla is timed once per op, shape and dtype, whatever our mode
    for op_name, set_name, (B, L, D), dt_name, mode in _cases(a):
        op = OPS[op_name]
        OPS_NAMES = op["names"]
        if time.perf_counter() - t_start > a.time_limit:
            print(f"time limit: stopping before {op_name} {B, L, D} {dt_name} {mode or ''}")
            _write(rows, a.out)
            sys.exit(1 if failed else 0)
        two_level.DOT_OPERANDS = mode or "fp32"
        # non-default modes change only the two-level kernels: the others are not re-run
        ours = {k: f for k, f in op["ours"].items()
                if mode in (None, "fp32") or k in op["dot_operands"]}
        dtype = getattr(torch, dt_name)
        torch.manual_seed(0)
        ins = op["make"](B, L, D, dtype, dev)
        row = dict(op=op_name, set=set_name, B=B, L=L, D=D, dtype=dt_name,
                   dot_operands=mode or "", fp32_matmul=a.fp32_matmul)
        if not a.no_check:
            ins64 = [_leaf(t.double()) for t in ins]
            ref_outs = op["ref"](*ins64)
            gouts = [torch.randn_like(o) for o in ref_outs]
            ref_grads = torch.autograd.grad(ref_outs, ins64, gouts)
            ref_outs = [o.detach() for o in ref_outs]
            for impl, fn in ours.items():
                errs = _check(fn, ref_outs, ref_grads, ins, gouts)
                worst = max(errs.values())
                row[f"err_{impl}"] = worst
                row[f"worst_{impl}"] = max(errs, key=errs.get)
                if not math.isfinite(worst) or worst > TOL[dtype]:
                    failed.append((op_name, B, L, D, dt_name, mode, impl, errs))
                    print(f"FAIL {op_name} {impl} {(B, L, D)} {dt_name} {mode or ''}: {errs}")
            del ref_outs, ref_grads, ins64
        grads_of = list(range(len(ins)))
        for impl, fn in ours.items():
            if a.device == "cuda":
                row[f"ms_{impl}"] = _bench(fn, ins, grads_of)
        if not a.no_fla:
            key = (op_name, B, L, D, dt_name)
            if key not in fla_ms:
                try:
                    t0 = time.perf_counter()
                    outs = op["fla"](*ins)
                    sum(o.float().sum() for o in outs).backward()
                    torch.cuda.synchronize()
                    row["setup_s_fla"] = time.perf_counter() - t0
                    fla_ms[key] = _bench(op["fla"], ins, grads_of)
                except Exception as e:  # noqa: BLE001 - recorded, not fatal
                    fla_ms[key] = f"{type(e).__name__}: {e}"[:200]
            if isinstance(fla_ms[key], float):
                row["ms_fla"] = fla_ms[key]
                row["vs_fla"] = row["ms_triton"] / row["ms_fla"]
            else:
                row["error_fla"] = fla_ms[key]
        row["elapsed_s"] = time.perf_counter() - t_start
        rows.append(row)
        print(row, flush=True)
        _write(rows, a.out)
        if a.device == "cuda":
            torch.cuda.empty_cache()
    two_level.DOT_OPERANDS = "fp32"
    print(f"{len(rows)} rows, {len(failed)} failures -> {a.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
