"""Benchmark mad_bench's Triton ops against torch eager, torch.compile and fla.

For every op and shape: forward+backward median time (``triton.testing.do_bench`` on CUDA, a
wall-clock median on CPU), peak extra memory of one forward+backward (CUDA), ``vs_best`` =
Triton ms / best baseline ms (< 1: Triton wins), and the seconds each impl's first call took
(``setup_s_*``: Triton JIT, fla autotuning, torch.compile). The relative error of outputs and
input gradients vs the fp64 torch reference (max |a-b| / max |b|, worst tensor) is checked on
``--err-batch`` rows at the first shape of each (op, shape set) only (``--check``).

Time bounds (the whole ``--shapes mad,long`` table must fit one 10-minute GPU call): rows run
breadth-first (the first shape of every op, then the second, ...), so every op is reached
before any op's largest shapes; torch.compile recompiles per shape (the references' chunk loops
unroll into the graph), so it stops once its first calls have taken ``--compile-budget``
seconds in all and is skipped above ``--compile-max-len``; no new row starts after
``--time-limit`` seconds. Each row is printed when done and the JSON and CSV are rewritten after
every row.

    python benchmarks/kernels.py --device cuda --shapes mad,long --out benchmarks/results/kernels.json
    python benchmarks/kernels.py --device cpu --shapes tiny        # interpreter smoke test

Add an op by appending an :class:`OpBench` to :data:`OPS` (``make`` builds the positional
arguments for a ``(B, L, D)`` shape; ``grad_args`` says which get gradients).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

SHAPE_SETS = {
    # MAD protocol sizes (d_model 128)
    "mad": dict(dtype="bfloat16", shapes=[(128, L, 128) for L in (128, 256, 512, 1024)]),
    # long sequences, wide model
    "long": dict(dtype="bfloat16", shapes=[(8, L, 1024) for L in (2048, 4096, 8192, 16384)]),
    # CPU / interpreter smoke test: fp32 (the interpreter has no bf16), odd sizes
    "tiny": dict(dtype="float32", shapes=[(2, 37, 40)]),
}


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--shapes", default="mad",
                   help=f"comma-separated shape sets ({', '.join(SHAPE_SETS)}) or all")
    p.add_argument("--ops", default="all", help="comma-separated op names (default all)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="benchmark torch.compile(baseline) (auto: on for cuda, off for cpu)")
    p.add_argument("--err-batch", type=int, default=2, help="batch rows used for the fp64 error check")
    p.add_argument("--check", default="first", choices=["first", "all", "none"],
                   help="fp64 error check at the first shape of each (op, set), at every shape, or never")
    p.add_argument("--time-limit", type=float, default=540.0,
                   help="start no new row after this many seconds (the table so far is written)")
    p.add_argument("--compile-budget", type=float, default=180.0,
                   help="no more torch.compile baselines once their first calls took this many seconds in all")
    p.add_argument("--compile-max-len", type=int, default=4096,
                   help="no torch.compile baseline above this L (the chunk loops unroll into the graph)")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetitions (ms)")
    p.add_argument("--cudagraph", action="store_true",
                   help="also time each fwd+bwd replayed from a CUDA graph (GPU time without host overhead)")
    p.add_argument("--out", default="benchmarks/results/kernels.json")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device == "cpu":
    # the Triton interpreter must be chosen before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mad_bench.ops.causal_conv import causal_conv1d  # noqa: E402
from mad_bench.ops.gla import chunk_gla as cla_gla, chunk_simple_gla as cla_simple_gla  # noqa: E402


# ----------------------------------------------------------------------------- op registry
@dataclass
class OpBench:
    name: str
    make: Callable[[int, int, int, torch.dtype, torch.device], list]  # positional args
    grad_args: Sequence[int]  # indices of args that receive gradients
    triton: Callable  # fused kernel path
    torch: Callable  # eager baseline (may be a native op)
    ref: Callable | None = None  # fp64 reference (default: ``torch``, which must keep fp64 in fp64)
    shape_sets: Sequence[str] = ("mad", "long", "tiny")
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _rn(*shape, dtype, device, scale=1.0, shift=0.0):
    return torch.randn(*shape, dtype=dtype, device=device) * scale + shift


OPS: list[OpBench] = [
    OpBench(
        "short_conv_silu",
        lambda B, L, D, dt, dev: [_rn(B, L, D, dtype=dt, device=dev), _rn(D, 4, dtype=dt, device=dev, scale=0.5),
                                  _rn(D, dtype=dt, device=dev, scale=0.1)],
        (0, 1, 2),
        triton=lambda x, w, b: causal_conv1d(x, w, b, "silu", impl="triton"),
        torch=lambda x, w, b: causal_conv1d(x, w, b, "silu", impl="torch"),
        notes="causal depthwise conv, K = 4, bias, silu (auto: Triton from L 1024)",
    ),
]


# ----------------------------------------------------------------------------- linear attention
# q, k, v are made in fla's [B, L, H, d] storage; our kernels take the [B, H, L, d] transposed
# views (strided, no copy) and every impl returns o as [B, H, L, V] so errors compare directly.
# H = 8 heads, d = D / 8: MAD (D 128) -> K = V = 16; long (D 1024) -> K = V = 128.
LA_HEADS = 8


def _fla_fn(module: str, name: str):
    """fla's op, or a stub that raises (recorded in the table) where fla is not installed."""
    try:
        import importlib

        return getattr(importlib.import_module(module), name)
    except Exception as e:  # noqa: BLE001 - any import failure means "no fla here"
        msg = f"{module}.{name} unavailable: {type(e).__name__}: {e}"

        def missing(*a, **k):
            raise RuntimeError(msg)

        return missing


def _la_make(gate):
    def make(B, L, D, dt, dev):
        H = LA_HEADS
        d = D // H
        args = [_rn(B, L, H, d, dtype=dt, device=dev) for _ in range(3)]
        if gate == "scalar":  # log decays in [-0.3, -0.003]: retention / mamba2-like
            args.append(-torch.empty(B, L, H, device=dev).uniform_(0.003, 0.3))
        elif gate == "key":  # GLA's logsigmoid(x) / 16
            args.append(F.logsigmoid(_rn(B, L, H, d, dtype=torch.float32, device=dev, scale=2.0)) / 16)
        return args
    return make


def _T(*ts):
    return [t.transpose(1, 2) if t is not None else None for t in ts]


def _fla_la(fn):
    # fla takes [B, T, H, d] and returns (o, final_state); o back to [B, H, T, V]
    return lambda q, k, v, g=None: fn(q, k, v, g)[0].transpose(1, 2)


_fla_simple = _fla_fn("fla.ops.simple_gla", "chunk_simple_gla")
_fla_gla = _fla_fn("fla.ops.gla", "chunk_gla")

OPS += [
    OpBench(
        "chunk_linear_attn",
        _la_make(None), (0, 1, 2),
        triton=lambda q, k, v: cla_simple_gla(*_T(q, k, v), None, impl="triton"),
        torch=lambda q, k, v: cla_simple_gla(*_T(q, k, v), None, impl="torch"),
        notes="no decay; H 8, K = V = D/8; fla = simple_gla with g None",
        extra=dict(baselines={"fla": lambda q, k, v: _fla_la(_fla_simple)(q, k, v, None)}),
    ),
    OpBench(
        "chunk_simple_gla",
        _la_make("scalar"), (0, 1, 2, 3),
        triton=lambda q, k, v, g: cla_simple_gla(*_T(q, k, v, g), impl="triton"),
        torch=lambda q, k, v, g: cla_simple_gla(*_T(q, k, v, g), impl="torch"),
        notes="scalar decay per head/step (retnet, mamba2); H 8, K = V = D/8",
        extra=dict(baselines={"fla": _fla_la(_fla_simple)}),
    ),
    OpBench(
        "chunk_gla",
        _la_make("key"), (0, 1, 2, 3),
        triton=lambda q, k, v, g: cla_gla(*_T(q, k, v, g), impl="triton"),
        torch=lambda q, k, v, g: cla_gla(*_T(q, k, v, g), impl="torch"),
        notes="per-key decay (GLA); H 8, K = V = D/8",
        extra=dict(baselines={"fla": _fla_la(_fla_gla)}),
    ),
]


# ----------------------------------------------------------------------------- selective scan, delta rule
# Mamba-1 selective scan: time-major tensors as in the Mamba layer ([B, L, E], B/C [B, L, N]),
# passed to the ops as [B, E, L] / [B, N, L] transposed views; E = 2 D (expand 2), N = 16,
# dt bias + softplus, D skip and silu(z) gate fused. torch = the op's chunked torch reference
# (fp32; fp64 inputs stay fp64: the error check's reference).
# Delta rule: fla's [B, L, H, d] storage (H 8, d = D / 8), L2-normalised keys, beta = sigmoid;
# our kernel takes [B, H, L, d] views; fla = fla.ops.delta_rule.chunk_delta_rule (if installed).
from mad_bench.ops.delta_rule import chunk_delta_rule as dr_chunk_delta_rule  # noqa: E402
from mad_bench.ops.selective_scan import selective_scan as ss_selective_scan  # noqa: E402

SS_STATE = 16
DR_HEADS = 8


def _ss_make(B, L, D, dt, dev):
    E, N = 2 * D, SS_STATE
    step = torch.exp(torch.rand(E, device=dev) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    bias = step + torch.log(-torch.expm1(-step))  # softplus(bias) log-uniform in [1e-3, 0.1]
    A = -torch.arange(1, N + 1, dtype=torch.float32, device=dev).repeat(E, 1)  # S4D-real
    return [_rn(B, L, E, dtype=dt, device=dev), _rn(B, L, E, dtype=dt, device=dev, scale=0.5), A,
            _rn(B, L, N, dtype=dt, device=dev), _rn(B, L, N, dtype=dt, device=dev),
            _rn(E, dtype=torch.float32, device=dev, scale=0.1, shift=1.0), _rn(B, L, E, dtype=dt, device=dev),
            bias]


def _ss_call(fn, **kw):
    def call(u, delta, A, Bm, Cm, Dv, z, bias):
        t = lambda x: x.transpose(1, 2)  # noqa: E731
        return fn(t(u), t(delta), A, t(Bm), t(Cm), Dv, t(z), bias, True, **kw)
    return call


def _ss_torch(u, delta, A, Bm, Cm, Dv, z, bias):
    if u.is_cuda:  # the chunked torch scan keeps ~12 fp32 [B, L, E, N] tensors for its backward
        need = 12 * 4 * u.numel() * A.shape[1]
        total = torch.cuda.get_device_properties(u.device).total_memory
        if need > 0.7 * total:
            raise MemoryError(f"skipped: the torch scan needs ~{need / 2**30:.0f} GiB")
    return _ss_call(ss_selective_scan, chunk_size=64, impl="torch")(u, delta, A, Bm, Cm, Dv, z, bias)


def _dr_make(B, L, D, dt, dev):
    H, d = DR_HEADS, D // DR_HEADS
    k = F.normalize(torch.randn(B, L, H, d, device=dev), dim=-1).to(dt)
    beta = torch.sigmoid(torch.randn(B, L, H, device=dev)).to(dt)
    return [_rn(B, L, H, d, dtype=dt, device=dev), k, _rn(B, L, H, d, dtype=dt, device=dev), beta]


def _dr_call(impl):
    return lambda q, k, v, b: dr_chunk_delta_rule(*[x.transpose(1, 2) for x in (q, k, v, b)], impl=impl)


def _dr_fla():
    try:
        from fla.ops.delta_rule import chunk_delta_rule as fla_cdr
    except Exception as e:  # noqa: BLE001 - no fla here
        msg = f"fla.ops.delta_rule.chunk_delta_rule unavailable: {type(e).__name__}: {e}"

        def missing(*a, **k):
            raise RuntimeError(msg)

        return missing
    return lambda q, k, v, b: fla_cdr(q, k, v, b)[0].transpose(1, 2)  # o back to [B, H, L, V]


OPS += [
    OpBench(
        "selective_scan",
        _ss_make, (0, 1, 2, 3, 4, 5, 6, 7),
        triton=_ss_call(ss_selective_scan, impl="triton"),
        torch=_ss_torch,
        notes=f"mamba-1: E = 2D, N = {SS_STATE}; dt bias + softplus, D, silu(z) fused; torch = chunked scan",
    ),
    OpBench(
        "chunk_delta_rule",
        _dr_make, (0, 1, 2, 3),
        triton=_dr_call("triton"),
        torch=_dr_call("torch"),
        notes="deltanet; H 8, K = V = D/8; triton = sequential recurrence (state in registers)",
        extra=dict(baselines={"fla": _dr_fla()}),
    ),
]


# ----------------------------------------------------------------------------- mLSTM
# xLSTM's chunked stabilised mLSTM: q, k, v in [B, L, H, d] storage (H 8, d = D / 8; k pre-scaled
# by d^-0.5 as in the layer), passed as [B, H, L, d] views; gates i~ [B, L, H] (~ N(0, 2^2)) and
# forget pre-activations f~ (~ N(4, 1): xLSTM's forget bias 3..6), log f = logsigmoid(f~) in fp32.
# torch = mlstm_chunked (chunk 64, fp32 inside); the fp64 reference is the same in fp64.
from mad_bench.ops.mlstm import mlstm as ml_mlstm  # noqa: E402

ML_HEADS = 8


def _ml_make(B, L, D, dt, dev):
    H, d = ML_HEADS, D // ML_HEADS
    return [_rn(B, L, H, d, dtype=dt, device=dev), _rn(B, L, H, d, dtype=dt, device=dev, scale=d**-0.5),
            _rn(B, L, H, d, dtype=dt, device=dev), _rn(B, L, H, dtype=torch.float32, device=dev, scale=2.0),
            _rn(B, L, H, dtype=torch.float32, device=dev, shift=4.0)]


def _ml_call(impl):
    def call(q, k, v, ig, fp):
        t = lambda x: x.transpose(1, 2)  # noqa: E731
        return ml_mlstm(t(q), t(k), t(v), t(ig.float()), t(F.logsigmoid(fp.float())), impl=impl)
    return call


OPS += [
    OpBench(
        "mlstm",
        _ml_make, (0, 1, 2, 3, 4),
        triton=_ml_call("triton"),
        torch=_ml_call("torch"),
        notes="xLSTM mLSTM (exp input gate, normaliser, stabiliser); H 8, K = V = D/8; torch = mlstm_chunked",
    ),
]


# ----------------------------------------------------------------------------- sLSTM, RWKV-6
# sLSTM cell loop: wx [B, L, H, 4 d_h] (the layer's precomputed W x + b), R [H, d_h, 4 d_h] fp32,
# H 4 (the layer's default), d_h = D / 4; torch = the layer's eager per-step loop. Not run on the
# long set (d_h 256: the four R blocks no longer fit in registers).
# RWKV-6 WKV: r, k, v in fla's [B, L, H, K] storage (K 16, MAD-Lab's head size; H = D / 16),
# fp32 log decays -exp(N(-0.5, 1)), u [H, K]; our kernel takes [B, H, L, K] views; torch = the
# op's chunked torch reference (chunk 16); fla = fla.ops.rwkv6.chunk_rwkv6 (scale 1).
from mad_bench.ops.rwkv6 import wkv6 as rw_wkv6  # noqa: E402
from mad_bench.ops.slstm import slstm_scan as sl_scan  # noqa: E402

SL_HEADS = 4
RW_HEAD = 16


def _sl_make(B, L, D, dt, dev):
    H, dh = SL_HEADS, D // SL_HEADS
    wx = torch.randn(B, L, H, 4, dh, device=dev)
    wx[..., 1, :] += 3.0  # forget-gate bias (the layer's init: 3..6)
    return [wx.view(B, L, H, 4 * dh).to(dt), _rn(H, dh, 4 * dh, dtype=torch.float32, device=dev, scale=dh**-0.5)]


def _rw_make(B, L, D, dt, dev):
    H, K = D // RW_HEAD, RW_HEAD
    logw = -torch.exp(torch.randn(B, L, H, K, device=dev) - 0.5)
    return [*(_rn(B, L, H, K, dtype=dt, device=dev) for _ in range(3)), logw,
            _rn(H, K, dtype=torch.float32, device=dev, scale=0.5)]


def _rw_call(fn, **kw):
    return lambda r, k, v, w, u: fn(*_T(r, k, v, w), u, **kw)


_fla_rwkv6 = _fla_fn("fla.ops.rwkv6", "chunk_rwkv6")

OPS += [
    OpBench(
        "slstm_scan",
        _sl_make, (0, 1),
        triton=lambda wx, R: sl_scan(wx, R, impl="triton"),
        torch=lambda wx, R: sl_scan(wx, R, impl="torch"),
        shape_sets=("mad", "tiny"),
        notes="sLSTM time loop; H 4, d_h = D/4; triton = one program per (batch, head)",
    ),
    OpBench(
        "wkv6",
        _rw_make, (0, 1, 2, 3, 4),
        triton=_rw_call(rw_wkv6, impl="triton"),
        torch=_rw_call(rw_wkv6, impl="torch"),
        notes=f"rwkv6 time mixing; K = V = {RW_HEAD}, H = D/{RW_HEAD}; triton = sequential recurrence",
        extra=dict(baselines={"fla": lambda r, k, v, w, u: _fla_rwkv6(r, k, v, w, u, scale=1.0)[0].transpose(1, 2)}),
    ),
]


# ----------------------------------------------------------------------------- measurement
def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _slice_batch(args, n, B, L):
    """The first ``n`` batch rows of every [B, L, ...] (or [B*L, ...]) argument."""
    res = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() >= 2 and a.shape[0] == B and a.shape[1] == L:
            res.append(a[:n])
        elif isinstance(a, torch.Tensor) and a.dim() >= 1 and a.shape[0] == B * L:
            res.append(a[: n * L])
        else:
            res.append(a)
    return res


def _prepare(args, grad_args, dtype=None):
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            a = a.detach().clone()
            if dtype is not None and a.is_floating_point():
                a = a.to(dtype)
            a.requires_grad_(i in grad_args)
        out.append(a)
    return out


def _fwd_bwd(fn, args, grad_args, gouts=None):
    outs = _flat(fn(*args))
    if gouts is None:
        g = torch.Generator(device=outs[0].device).manual_seed(0)
        gouts = [torch.randn(o.shape, generator=g, device=o.device, dtype=torch.float32).to(o.dtype) for o in outs]
    torch.autograd.backward(outs, [go.to(o.dtype) for go, o in zip(gouts, outs)])
    grads = [args[i].grad for i in grad_args]
    return outs, grads, gouts


def _time(fn, device, grad_tensors, warmup, rep):
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_tensors, return_mode="median")
    ts = []  # CPU: the interpreter smoke test; the first call (setup) was the warm-up
    for _ in range(1):
        for t in grad_tensors:
            t.grad = None
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _peak_mb(fn, device, grad_tensors):
    if device.type != "cuda":
        return None
    for t in grad_tensors:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    for t in grad_tensors:
        t.grad = None
    return peak / 2**20


def _rel_err(outs, grads, outs64, grads64):
    worst = 0.0
    for a, b in zip(list(outs) + list(grads), list(outs64) + list(grads64)):
        if a is None or b is None:
            continue
        a = a.detach().double()
        b = b.detach().double()
        denom = b.abs().max().clamp_min(1e-30)
        e = ((a - b).abs().max() / denom).item()
        worst = max(worst, e if math.isfinite(e) else float("inf"))
    return worst


def bench_op(op: OpBench, set_name: str, shape, dtype, device, compiled, args_ns, check: bool):
    """One row. ``compiled``: this op's torch.compile'd baseline (None: not run)."""
    B, L, D = shape
    torch.manual_seed(0)
    base_args = op.make(B, L, D, dtype, device)
    impls = {"triton": op.triton, "torch": op.torch}
    if compiled is not None:
        impls["compile"] = compiled
    impls.update(op.extra.get("baselines", {}))  # e.g. {"fla": fn}: external kernels
    row = dict(op=op.name, shape_set=set_name, B=B, L=L, D=D, dtype=str(dtype).replace("torch.", ""),
               device=str(device), notes=op.notes)
    small = outs64 = None
    if check:  # fp64 reference on a batch slice
        t0 = time.perf_counter()
        small = _slice_batch(base_args, min(B, args_ns.err_batch), B, L)
        a64 = _prepare(small, op.grad_args, torch.float64)
        outs64, grads64, gouts = _fwd_bwd(op.ref or op.torch, a64, op.grad_args)
        row["check_s"] = time.perf_counter() - t0
    for name, fn in impls.items():
        try:
            if check:
                a = _prepare(small, op.grad_args)
                outs, grads, _ = _fwd_bwd(fn, a, op.grad_args, gouts)
                row[f"err_{name}"] = _rel_err(outs, grads, outs64, grads64)
            a = _prepare(base_args, op.grad_args)
            gts = [a[i] for i in op.grad_args]
            big_gouts = None

            def run(fn=fn, a=a):
                nonlocal big_gouts
                _, _, big_gouts = _fwd_bwd(fn, a, op.grad_args, big_gouts)

            t0 = time.perf_counter()
            run()  # first call at this shape: JIT compile, autotuning, torch.compile
            if device.type == "cuda":
                torch.cuda.synchronize()
            row[f"setup_s_{name}"] = time.perf_counter() - t0
            row[f"ms_{name}"] = _time(run, device, gts, args_ns.warmup, args_ns.rep)
            row[f"peak_mb_{name}"] = _peak_mb(run, device, gts)
            if args_ns.cudagraph and device.type == "cuda":
                import triton.testing

                try:
                    row[f"graph_ms_{name}"] = triton.testing.do_bench_cudagraph(
                        run, rep=args_ns.rep, grad_to_none=gts, return_mode="median")
                except Exception as e:
                    row[f"graph_ms_{name}"] = None
                    row[f"error_graph_{name}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        except Exception as e:  # keep going; record why
            row[f"ms_{name}"] = None
            row[f"error_{name}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    baselines = [row.get(f"ms_{n}") for n in impls if n != "triton"]
    baselines = [b for b in baselines if b is not None]
    if row.get("ms_triton") is not None and baselines:
        row["best_baseline_ms"] = min(baselines)
        row["vs_best"] = row["ms_triton"] / row["best_baseline_ms"]
    return row


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rows, impls):
    graph = any(f"graph_ms_{n}" in r for r in rows for n in impls)
    gcols = [f"graph_ms_{n}" for n in impls] if graph else []
    hdr = ["op", "set", "B", "L", "D", *[f"ms {n}" for n in impls], "vs_best", *[c.replace("_ms_", " ") for c in gcols],
           *[f"MB {n}" for n in impls], *[f"err {n}" for n in impls]]
    lines = [hdr]
    for r in rows:
        lines.append([r["op"], r["shape_set"], str(r["B"]), str(r["L"]), str(r["D"]),
                      *[_fmt(r.get(f"ms_{n}"), ".3f") for n in impls], _fmt(r.get("vs_best"), ".2f"),
                      *[_fmt(r.get(c), ".3f") for c in gcols],
                      *[_fmt(r.get(f"peak_mb_{n}"), ".1f") for n in impls],
                      *[_fmt(r.get(f"err_{n}"), ".1e") for n in impls]])
    widths = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    for j, l in enumerate(lines):
        print("  ".join(c.rjust(w) for c, w in zip(l, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for n in impls:
            for k in (f"error_{n}", f"error_graph_{n}"):
                if r.get(k):
                    print(f"! {r['op']} {r['shape_set']} L={r['L']} {k}: {r[k]}")


def _plan(sets, names):
    """(set, op, shape index) rows, breadth-first within a set: the first shape of every op, then
    the second, ... so that a time limit cuts the largest shapes, not whole ops."""
    plan = []
    for set_name in sets:
        ops = [op for op in OPS if (not names or op.name in names) and set_name in op.shape_sets]
        for i in range(len(SHAPE_SETS[set_name]["shapes"])):
            plan += [(set_name, op, i) for op in ops]
    return plan


def _write(out: Path, meta: dict, rows: list[dict]) -> None:
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main(a):
    start = time.perf_counter()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but CUDA is not available (use --device cpu --shapes tiny)")
    sets = list(SHAPE_SETS) if a.shapes == "all" else a.shapes.split(",")
    bad = [s for s in sets if s not in SHAPE_SETS]
    if bad:
        sys.exit(f"--shapes: unknown set(s) {bad}; choose from {list(SHAPE_SETS)} or all")
    if device.type == "cpu":
        if sets != ["tiny"]:
            print("note: on CPU only the 'tiny' set is meaningful (interpreter, fp32); using it")
        sets = ["tiny"]
    elif a.shapes == "all":
        sets = ["mad", "long"]
    use_compile = a.compile == "on" or (a.compile == "auto" and device.type == "cuda")
    if use_compile:
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = 256
    names = None if a.ops == "all" else set(a.ops.split(","))
    unknown = sorted(names - {op.name for op in OPS}) if names else []
    if unknown:
        sys.exit(f"--ops: unknown op(s) {unknown}; choose from {[op.name for op in OPS]}")
    impls = ["triton", "torch"] + (["compile"] if use_compile else [])
    for op in OPS:  # external baselines (fla ...) of the selected ops get their own columns
        if not names or op.name in names:
            impls += [n for n in op.extra.get("baselines", {}) if n not in impls]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(torch=torch.__version__, device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                interpret=os.environ.get("TRITON_INTERPRET", "0"), argv=sys.argv[1:])
    try:
        import triton

        meta["triton"] = triton.__version__
    except Exception:
        pass
    compiled: dict[str, Callable] = {}  # one torch.compile wrapper per op, reused across shapes
    compile_s = 0.0  # seconds spent in torch.compile's first calls so far
    checked: set[tuple[str, str]] = set()
    rows, plan = [], _plan(sets, names)
    for k, (set_name, op, i) in enumerate(plan):
        elapsed = time.perf_counter() - start
        if elapsed > a.time_limit:
            meta["stopped"] = f"--time-limit {a.time_limit:g} s reached after {len(rows)} of {len(plan)} rows"
            print(f"! {meta['stopped']}", flush=True)
            break
        shape = SHAPE_SETS[set_name]["shapes"][i]
        dtype = getattr(torch, SHAPE_SETS[set_name]["dtype"])
        fn, why = None, None
        if use_compile and shape[1] > a.compile_max_len:
            why = f"skipped: L > --compile-max-len {a.compile_max_len}"
        elif use_compile and compile_s > a.compile_budget:
            why = f"skipped: --compile-budget {a.compile_budget:g} s spent"
        elif use_compile:
            fn = compiled.setdefault(op.name, torch.compile(op.torch, dynamic=False))
        check = a.check == "all" or (a.check == "first" and (op.name, set_name) not in checked)
        checked.add((op.name, set_name))
        row = bench_op(op, set_name, shape, dtype, device, fn, a, check)
        if why:
            row["error_compile"] = why
        compile_s += row.get("setup_s_compile") or 0.0
        row["elapsed_s"] = time.perf_counter() - start
        rows.append(row)
        setup = max((v for key, v in row.items() if key.startswith("setup_s_")), default=0.0)
        print(f"  [{k + 1}/{len(plan)} {row['elapsed_s']:5.0f} s] {op.name:18s} {set_name:5s} {shape}  "
              f"triton {_fmt(row.get('ms_triton'), '.3f')} ms  vs_best {_fmt(row.get('vs_best'), '.2f')}  "
              f"slowest setup {setup:.1f} s", flush=True)
        _write(out, meta, rows)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print()
    print_table(rows, impls)
    meta["total_s"] = time.perf_counter() - start
    _write(out, meta, rows)
    print(f"\nwrote {out} and {out.with_suffix('.csv')} ({meta['total_s']:.0f} s)")


if __name__ == "__main__":
    main(ARGS)
