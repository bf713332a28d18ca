"""Benchmark mad_bench's Triton ops against torch eager, torch.compile and fla.

For every op and shape: forward+backward median time in ms (``triton.testing.do_bench`` on
CUDA; 3 timed calls for impls slower than ``--slow-ms``; one wall-clock call on CPU), peak extra
memory of one forward+backward (CUDA), ``vs_best`` = Triton ms / best baseline ms (< 1: Triton
wins), the HBM floor (``floor_ms``: every input read and every output written once in the
forward, every input and output gradient read and every input gradient written once in the
backward, at ``--hbm-tbs`` TB/s; H200: 4.8) and ``x_floor`` = Triton ms / floor ms. Set-up
is timed in its own columns and never in ``ms_*``: ``warm_s_<impl>`` is the warm-up's first call
at the row's shape (Triton JIT, fla's autotuning, torch.compile; below), ``setup_s_<impl>`` the
timed loop's own first call (after a warm-up: cache hits), ``check_s`` the fp64 error check
(relative error of outputs and input gradients vs the fp64 torch reference, max |a-b| / max |b|,
worst tensor, over the first ``--err-batch`` batch rows, at the first shape of each (op, set) by
default). The check runs each impl at the row's own shape, with output gradients zero outside
those rows: nothing compiles or tunes again for it (on a batch slice it did: 68 s for
selective_scan's torch.compile baseline on the H200).

Warm-up (``--warm-workers``, default 12 on CUDA): before the timed loop, spawned worker processes
make the first forward+backward of every compiling impl (ours, fla, torch.compile) at every row's
shape, dtype and layout, in parallel. Triton's and inductor's caches live in one folder
(``--cache-dir``, default a temporary one) shared with the timed loop, which then finds the
compiled kernels and graphs on disk; fla's tuned configs come back from the workers and are
pinned. An impl that raised or killed its worker in the warm-up is not run again: its error is
the row's. Items run ours and fla's first (an impl's later shapes after its first shape, which
compiles the kernels they share), then torch.compile's; at most an estimated 85 % of the free
GPU memory at once; none starts after ``--warm-limit`` s and those still running then are
abandoned (torch.compile is then skipped at those shapes; ours and fla's first calls are made
and timed by the loop). ``meta.warm`` sums it up (wall time, items per status); a row's
``compile_cache`` says whether its compile baseline found the warm-up's graphs (``fx_hit``,
``aot_hit``) or compiled again (``fx_miss``).

Bounds (the whole ``--shapes mad,long`` table must fit one GPU call of < 9 minutes):

* rows run breadth-first across the sets (the first shape of every op in every set, then the
  second, ...), so a time cut drops the largest shapes of both sets, not the long set;
* autotuning of external kernels (fla) is **pinned or capped**: a key found in
  ``--autotune-pins`` (a ``*.autotune.json`` written by an earlier run) benchmarks only its
  pinned config; any other key benchmarks at most ``--autotune-configs`` of its configs
  (evenly spaced over the kernel's list; ``0``: all). The configs chosen are written to
  ``<out>.autotune.json`` after every row: keep it and pass it as ``--autotune-pins`` to make
  the next run's fla set-up compile-only (and its choices independent of the warm-up's
  concurrent GPU load);
* torch.compile recompiles per shape (the references' chunk loops unroll into the graph): it is
  not run for ops whose reference is a per-step loop, above ``--compile-max-len``, after its
  first calls in the timed loop took ``--compile-budget`` seconds in all, nor for an op once it
  was slower than eager at a smaller shape of either set (it would not be the best baseline);
* an impl whose timing took more than ``--max-impl-s`` (predicted linearly in L from its
  previous row of the same op and set) is skipped at the larger shapes, with the reason;
* the warm-up stops at ``--warm-limit`` s; no new row starts after ``--time-limit`` seconds from
  the start (warm-up included). The plan (rows in order, impls) is printed first; each row is
  printed when done and the JSON and CSV are rewritten (atomically) after every row.

On the H200 (one call, outputs under $OUT)::

    python benchmarks/kernels.py --device cuda --shapes mad,long --out $OUT/kernels.json \
        [--autotune-pins benchmarks/results/kernels-h200.autotune.json]
    python benchmarks/scan_check.py --device cuda --sweep --out $OUT/scan_check.json

CPU smoke test (interpreter): ``python benchmarks/kernels.py --device cpu --shapes tiny
[--warm-workers 2]``.

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


def _parse(argv=None):
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
    p.add_argument("--time-limit", type=float, default=500.0,
                   help="start no new row after this many seconds (the table so far is written)")
    p.add_argument("--compile-budget", type=float, default=120.0,
                   help="no more torch.compile baselines once their first calls took this many seconds in all")
    p.add_argument("--compile-max-len", type=int, default=2048,
                   help="no torch.compile baseline above this L (the chunk loops unroll into the graph)")
    p.add_argument("--autotune-configs", type=int, default=3,
                   help="configs an external kernel's autotuner benchmarks per key (0: all)")
    p.add_argument("--autotune-pins", default=None,
                   help="a *.autotune.json of an earlier run: its configs are used without tuning")
    p.add_argument("--max-impl-s", type=float, default=20.0,
                   help="skip an impl at larger shapes once its timing is predicted to take longer")
    p.add_argument("--slow-ms", type=float, default=50.0,
                   help="impls slower than this per call are timed over 3 calls instead of do_bench")
    p.add_argument("--hbm-tbs", type=float, default=4.8, help="HBM bandwidth of the floor column (TB/s)")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetitions (ms)")
    p.add_argument("--cudagraph", action="store_true",
                   help="also time each fwd+bwd replayed from a CUDA graph (GPU time without host overhead)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also profile three fwd+bwd calls per impl (torch.profiler): the summed GPU kernel time "
                        "(kernel_ms_<impl>, beside the timed ms: the rest is host overhead) and the K "
                        "slowest kernels (top_<impl>), printed under the table")
    p.add_argument("--warm-workers", type=int, default=None,
                   help="worker processes that make every row's first calls before the timed loop "
                        "(Triton JIT, fla's autotuning, torch.compile) in parallel; default 12 on cuda, 0 on cpu")
    p.add_argument("--warm-limit", type=float, default=210.0,
                   help="the warm-up starts no item after this many seconds and abandons those still running")
    p.add_argument("--cache-dir", default=None,
                   help="Triton and inductor cache folder shared by the workers and the timed loop "
                        "(default: a new temporary folder, removed at the end)")
    p.add_argument("--fp32-matmul", default="highest", choices=["highest", "high"],
                   help="torch.set_float32_matmul_precision for the run: 'high' gives our kernels' fp32 "
                        "tl.dot (upcast 16-bit tiles) TF32 instead of IEEE fp32, as bf16 training runs of "
                        "layers that opt in do (train.core.fp32_matmul)")
    p.add_argument("--out", default="benchmarks/results/kernels.json")
    a = p.parse_args(argv)
    if a.warm_workers is None:
        a.warm_workers = 12 if a.device == "cuda" else 0
    if a.warm_workers < 0:
        p.error(f"--warm-workers must be >= 0, got {a.warm_workers}")
    if a.err_batch < 1:
        p.error(f"--err-batch must be >= 1, got {a.err_batch}")
    return a


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
    compile: bool = True  # False: the reference is a per-step loop (compiling unrolls L steps)
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
# passed to the ops as [B, E, L] / [B, N, L] transposed views; E = 2 D (expand 2), N = 4 (MAD's
# Mamba: d_state 4), dt bias + softplus, D skip and silu(z) gate fused. torch = the op's chunked torch reference
# (fp32; fp64 inputs stay fp64: the error check's reference).
# Delta rule: fla's [B, L, H, d] storage (H 8, d = D / 8), L2-normalised keys, beta = sigmoid;
# our kernel takes [B, H, L, d] views; fla = fla.ops.delta_rule.chunk_delta_rule (if installed).
from mad_bench.ops.delta_rule import chunk_delta_rule as dr_chunk_delta_rule  # noqa: E402
from mad_bench.ops.selective_scan import selective_scan as ss_selective_scan  # noqa: E402

SS_STATE = 4
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
        compile=False,
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


def _nbytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts if isinstance(t, torch.Tensor))


def hbm_floor_bytes(args, outs, grad_args) -> int:
    """Bytes a fused forward+backward must move at least: forward, every input read and every
    output written once; backward, every input and every output gradient read once and every
    input gradient written once (the states a recurrent kernel recomputes are not counted)."""
    ins = _nbytes(args)
    return 2 * ins + 2 * _nbytes(outs) + _nbytes([args[i] for i in grad_args])


def _time(run, device, grad_tensors, a) -> tuple[float, float | None, str]:
    """(median ms, peak extra MB, how timed). The first timed call also gives the peak memory;
    calls slower than ``--slow-ms`` are timed 3 times, faster ones by ``do_bench``."""
    if device.type != "cuda":  # CPU: the interpreter smoke test; the set-up call was the warm-up
        for t in grad_tensors:
            t.grad = None
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1e3, None, "1 call"

    def timed_call():
        for t in grad_tensors:
            t.grad = None
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        run()
        e1.record()
        torch.cuda.synchronize()
        return e0.elapsed_time(e1)

    for t in grad_tensors:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    first = timed_call()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    if first > a.slow_ms:
        return statistics.median([first, timed_call(), timed_call()]), peak, "3 calls"
    import triton.testing

    ms = triton.testing.do_bench(run, warmup=a.warmup, rep=a.rep, grad_to_none=grad_tensors, return_mode="median")
    return ms, peak, "do_bench"


def profile_kernels(run, grad_tensors, k: int, calls: int = 3) -> tuple[float, list]:
    """(GPU kernel ms per call, the ``k`` kernels with the most time per call as [name, ms, launches]):
    what the device spends, apart from the host's launch overhead that ``do_bench`` includes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            for t in grad_tensors:
                t.grad = None
            run()
        torch.cuda.synchronize()
    per: dict[str, list] = {}
    for e in prof.events():
        us = e.time_range.elapsed_us() if e.device_type == torch.autograd.DeviceType.CUDA else 0
        if us > 0:
            slot = per.setdefault(e.name, [0.0, 0])
            slot[0] += us / 1e3 / calls  # us -> ms, per call
            slot[1] += 1
    total = sum(v[0] for v in per.values())
    top = sorted(([n[:80], round(v[0], 4), v[1] // calls] for n, v in per.items()), key=lambda x: -x[1])[:k]
    return total, top


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


def _err_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _head(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` cut to the reference's leading rows (a batch or batch*length slice), shapes checked."""
    if t.shape == ref.shape:
        return t
    if t.dim() == ref.dim() and t.shape[1:] == ref.shape[1:] and t.shape[0] > ref.shape[0]:
        return t[: ref.shape[0]]
    raise ValueError(f"shape {tuple(t.shape)} does not extend the reference's {tuple(ref.shape)} along dim 0")


def check_row(op: OpBench, base_args: list, impls: dict, row: dict, n: int) -> None:
    """Relative error of every output and input gradient vs the fp64 reference on the first ``n``
    batch rows (``err_<impl>``). Each impl runs at the row's own shape, so its kernels, fla's
    tuned configs and torch.compile's graph are the ones just timed (a batch slice would compile
    and tune again: 68 s for selective_scan's compile baseline on the H200); the output
    gradients are zero outside the first ``n`` rows, so gradients shared across the batch
    (weights, biases) get exactly the slice's contribution."""
    B, L = row["B"], row["L"]
    try:
        a64 = _prepare(_slice_batch(base_args, n, B, L), op.grad_args, torch.float64)
        outs64, grads64, gouts = _fwd_bwd(op.ref or op.torch, a64, op.grad_args)
    except Exception as e:
        row["error_check"] = _err_text(e)
        return
    for name, fn in impls.items():
        if row.get(f"ms_{name}") is None:
            continue
        try:
            a = _prepare(base_args, op.grad_args)
            outs = _flat(fn(*a))
            full = []
            for o, g in zip(outs, gouts):
                z = torch.zeros(o.shape, dtype=o.dtype, device=o.device)
                _head(z, g).copy_(g)
                full.append(z)
            torch.autograd.backward(outs, full)
            grads = [None if a[i].grad is None or g64 is None else _head(a[i].grad, g64)
                     for i, g64 in zip(op.grad_args, grads64)]
            row[f"err_{name}"] = _rel_err([_head(o, o64) for o, o64 in zip(outs, outs64)], grads, outs64, grads64)
        except Exception as e:
            row[f"error_check_{name}"] = _err_text(e)


def bench_op(op: OpBench, set_name: str, shape, dtype, device, impls: dict, skips: dict, args_ns, check: bool):
    """One row: ``impls`` name -> callable (the baselines to run), ``skips`` name -> reason."""
    B, L, D = shape
    torch.manual_seed(0)
    base_args = op.make(B, L, D, dtype, device)
    row = dict(op=op.name, shape_set=set_name, B=B, L=L, D=D, dtype=str(dtype).replace("torch.", ""),
               device=str(device), notes=op.notes)
    for name, why in skips.items():
        row[f"ms_{name}"] = None
        row[f"error_{name}"] = why
    for name, fn in impls.items():
        t_start = time.perf_counter()
        try:
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
            if "floor_ms" not in row:
                fb = hbm_floor_bytes(a, big_gouts, op.grad_args)
                row["floor_mb"] = fb / 2**20
                row["floor_ms"] = fb / (args_ns.hbm_tbs * 1e12) * 1e3
            ms, peak, how = _time(run, device, gts, args_ns)
            row[f"ms_{name}"], row[f"peak_mb_{name}"], row[f"timed_{name}"] = ms, peak, how
            if args_ns.cudagraph and device.type == "cuda":
                import triton.testing

                try:
                    row[f"graph_ms_{name}"] = triton.testing.do_bench_cudagraph(
                        run, rep=args_ns.rep, grad_to_none=gts, return_mode="median")
                except Exception as e:
                    row[f"graph_ms_{name}"] = None
                    row[f"error_graph_{name}"] = _err_text(e)
            if args_ns.profile and device.type == "cuda":
                row[f"kernel_ms_{name}"], row[f"top_{name}"] = profile_kernels(run, gts, args_ns.profile)
            del run, a, gts, big_gouts
        except Exception as e:  # keep going; record why
            row[f"ms_{name}"] = None
            row[f"error_{name}"] = _err_text(e)
        row[f"total_s_{name}"] = time.perf_counter() - t_start - (row.get(f"setup_s_{name}") or 0.0)
    if check:
        t0 = time.perf_counter()
        check_row(op, base_args, impls, row, min(B, args_ns.err_batch))
        row["check_s"] = time.perf_counter() - t0
    baselines = [row.get(f"ms_{n}") for n in impls if n != "triton"]
    baselines = [b for b in baselines if b is not None]
    if row.get("ms_triton") is not None:
        row["x_floor"] = row["ms_triton"] / row["floor_ms"] if row.get("floor_ms") else None
        if baselines:
            row["best_baseline_ms"] = min(baselines)
            row["vs_best"] = row["ms_triton"] / row["best_baseline_ms"]
    return row


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rows, impls):
    graph = any(f"graph_ms_{n}" in r for r in rows for n in impls)
    gcols = [f"graph_ms_{n}" for n in impls] if graph else []
    hdr = ["op", "set", "B", "L", "D", "floor", *[f"ms {n}" for n in impls], "x_floor", "vs_best",
           *[c.replace("_ms_", " ") for c in gcols], *[f"setup_s {n}" for n in impls],
           *[f"MB {n}" for n in impls], *[f"err {n}" for n in impls]]
    lines = [hdr]
    for r in rows:
        lines.append([r["op"], r["shape_set"], str(r["B"]), str(r["L"]), str(r["D"]), _fmt(r.get("floor_ms"), ".3f"),
                      *[_fmt(r.get(f"ms_{n}"), ".3f") for n in impls], _fmt(r.get("x_floor"), ".1f"),
                      _fmt(r.get("vs_best"), ".2f"), *[_fmt(r.get(c), ".3f") for c in gcols],
                      *[_fmt(r.get(f"setup_s_{n}"), ".1f") for n in impls],
                      *[_fmt(r.get(f"peak_mb_{n}"), ".1f") for n in impls],
                      *[_fmt(r.get(f"err_{n}"), ".1e") for n in impls]])
    widths = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    for j, l in enumerate(lines):
        print("  ".join(c.rjust(w) for c, w in zip(l, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for n in impls:
            if r.get(f"top_{n}"):
                print(f"profile {r['op']} L={r['L']} {n}: kernels {r[f'kernel_ms_{n}']:.3f} ms of "
                      f"{_fmt(r.get(f'ms_{n}'), '.3f')} ms timed")
                for kname, ms, launches in r[f"top_{n}"]:
                    print(f"    {ms:8.4f} ms  x{launches:<3d} {kname}")
    for r in rows:
        for k, v in r.items():
            if (k.startswith("error") or k.startswith("warm_error")) and v:
                print(f"! {r['op']} {r['shape_set']} L={r['L']} {k}: {v}")


def _plan(sets, names):
    """(set, op, shape index) rows, breadth-first across the sets: the first shape of every op
    in every set, then the second, ... so that a time limit cuts the largest shapes of every
    set, never a whole set or op."""
    plan = []
    for i in range(max(len(SHAPE_SETS[s]["shapes"]) for s in sets)):
        for set_name in sets:
            if i < len(SHAPE_SETS[set_name]["shapes"]):
                plan += [(set_name, op, i) for op in OPS
                         if (not names or op.name in names) and set_name in op.shape_sets]
    return plan


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write(out: Path, meta: dict, rows: list[dict]) -> None:
    import io

    _atomic_write(out, json.dumps(dict(meta=meta, rows=rows), indent=1))
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    _atomic_write(out.with_suffix(".csv"), buf.getvalue())


# ----------------------------------------------------------------------------- bounded autotuning
class AutotuneBound:
    """Bounds Triton's autotuning of every ``triton.autotune`` kernel (fla's): a key pinned in
    ``pins`` benchmarks only that config, any other key at most ``max_configs`` configs evenly
    spaced over the kernel's list. ``chosen`` records the config picked per key (the next run's
    pins). Keys: kernel, the autotune key's values, the tensors' dtypes."""

    def __init__(self, max_configs: int, pins: dict[str, str] | None = None):
        self.max_configs, self.pins, self.chosen = max_configs, dict(pins or {}), {}
        self.pinned_hits = 0

    @staticmethod
    def key(tuner, args, kwargs) -> str:
        named = {**dict(zip(tuner.arg_names, args)), **kwargs}
        f = tuner.fn
        while hasattr(f, "fn"):
            f = f.fn
        vals = [str(named[k]) for k in tuner.keys if k in named]
        dts = [str(v.dtype) for v in named.values() if hasattr(v, "dtype")]
        return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', '?')}|{','.join(vals)}|{','.join(dts)}"

    def select(self, configs: list, key: str | None) -> list:
        pinned = self.pins.get(key) if key else None
        if pinned is not None:
            hit = [c for c in configs if str(c) == pinned]
            if hit:
                self.pinned_hits += 1
                return hit[:1]
        k = self.max_configs
        if k <= 0 or len(configs) <= k:
            return list(configs)
        if k == 1:
            return [configs[len(configs) // 2]]
        idx = sorted({round(i * (len(configs) - 1) / (k - 1)) for i in range(k)})
        return [configs[i] for i in idx]

    def install(self) -> Callable[[], None]:
        """Patch ``triton.runtime.autotuner.Autotuner``; returns the function that undoes it."""
        from triton.runtime import autotuner as at

        bound, prune0, run0 = self, at.Autotuner.prune_configs, at.Autotuner.run

        def prune_configs(tuner, kwargs):
            return bound.select(prune0(tuner, kwargs), getattr(tuner, "_mad_key", None))

        def run(tuner, *args, **kwargs):
            try:
                tuner._mad_key = bound.key(tuner, args, kwargs)
            except Exception:  # noqa: BLE001 - an unusual autotuner: cap only
                tuner._mad_key = None
            out = run0(tuner, *args, **kwargs)
            best = getattr(tuner, "best_config", None)
            if tuner._mad_key and best is not None and len(tuner.configs) > 1:
                bound.chosen[tuner._mad_key] = str(best)
            return out

        at.Autotuner.prune_configs, at.Autotuner.run = prune_configs, run

        def undo():
            at.Autotuner.prune_configs, at.Autotuner.run = prune0, run0

        return undo


# ----------------------------------------------------------------------------- warm-up
# The first call of a compiling impl at a shape costs seconds to minutes (Triton JIT of our
# kernels, fla's autotuning, torch.compile); one process doing them serially left the host's
# cores and most of the GPU idle. Before the timed loop, worker processes make those first calls
# in parallel at exactly each row's shape, dtype and layout. What they leave behind is found again
# by the timed loop: Triton's and inductor's on-disk caches (one folder, shared: same source,
# signature, constexprs and divisibility-by-16 specialisation -> same compiled kernel; same graph
# and input metadata -> same inductor graph), and fla's tuned configs, sent back and pinned.
WARM_MEM_FACTOR = {"triton": 8, "compile": 32}  # rough peak GPU bytes of one fwd+bwd / input bytes (else 8)
WARM_CONTEXT_BYTES = 3 << 29  # a worker's CUDA context, Triton and inductor state: ~1.5 GiB


def impl_fn(op: OpBench, name: str) -> Callable:
    """The callable of impl ``name`` of ``op``; ``compile`` makes a new torch.compile wrapper."""
    if name == "triton":
        return op.triton
    if name == "torch":
        return op.torch
    if name == "compile":
        return torch.compile(op.torch, dynamic=False)
    baselines = op.extra.get("baselines", {})
    if name not in baselines:
        raise KeyError(f"op {op.name!r} has no impl {name!r}; it has triton, torch, compile, {', '.join(baselines)}")
    return baselines[name]


def _stable_pickle_lookup() -> None:
    """Make inductor's cache keys the same in the workers as in the main process. The keys pickle
    ``torch.contiguous_format`` (an input's memory format) as a global, which pickle names after the
    first module in ``sys.modules`` that reaches it as ``<module>.torch.contiguous_format``. In the
    main process that is a torch submodule (``__main__`` is never used); in a spawned worker the
    script, re-imported as ``__mp_main__`` before torch, came first: every key differed and the
    timed loop compiled everything again (seen on the CPU: ``fx_miss 2`` after the warm-up; with
    this, ``aot_hit 1``). Moving the modules outside torch that hold ``torch`` after torch's own
    makes the first one torch's in every process."""
    for name in [n for n, m in list(sys.modules.items())
                 if n.split(".")[0] != "torch" and getattr(m, "torch", None) is torch]:
        sys.modules[name] = sys.modules.pop(name)


def share_caches(cache_dir: str, use_compile: bool, warm: bool) -> None:
    """Point Triton and inductor at one cache folder and set what the warm-up's cache hits need;
    called in the main process before the workers start (they inherit the environment) and in
    every worker (the config objects are per process). ``warm``: workers compile, one per core,
    so none needs inductor's pool of compile processes (``compile_threads`` is not in its cache
    key) and the main process only loads what they compiled."""
    os.environ["TRITON_CACHE_DIR"] = str(Path(cache_dir) / "triton")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "inductor")
    if warm:
        os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    if use_compile:
        _stable_pickle_lookup()
        import torch._dynamo as dynamo
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        dynamo.config.cache_size_limit = 256
        inductor_config.fx_graph_cache = True  # compiled graphs on disk ...
        functorch_config.enable_autograd_cache = True  # ... forward and backward together
        if warm:
            inductor_config.compile_threads = 1


COMPILE_CACHE_COUNTERS = (("aot_autograd", "autograd_cache_"), ("inductor", "fxgraph_cache_"))


def compile_cache_counts() -> dict[str, int]:
    """This process's inductor and AOTAutograd cache counters (hit, miss, bypass, ...): whether the
    timed loop's torch.compile first calls found what the warm-up compiled."""
    try:
        from torch._dynamo.utils import counters
    except Exception:  # noqa: BLE001 - a torch without them
        return {}
    return {f"{'aot' if group == 'aot_autograd' else 'fx'}_{k[len(prefix):]}": v
            for group, prefix in COMPILE_CACHE_COUNTERS for k, v in counters[group].items()
            if k.startswith(prefix) and v}


def _input_bytes(op: OpBench, shape, dtype) -> int:
    """Bytes of the row's inputs, from meta tensors (nothing allocated)."""
    B, L, D = shape
    try:
        return _nbytes(op.make(B, L, D, dtype, torch.device("meta")))
    except Exception:  # noqa: BLE001 - a make the meta device cannot run: assume 8 fp32 [B, L, D]
        return 8 * 4 * B * L * D


def warm_items(plan, budget: Budget) -> list[dict]:
    """The warm-up's items in dispatch priority: one per (row, compiling impl): our Triton impl and
    the external baselines first, in plan order, then torch.compile's. ``after``: the item that must
    finish first (an impl's later shapes reuse the kernels its first shape compiled: running them
    together would compile the same kernels twice)."""
    first, items, compiles = {}, [], []
    for set_name, op, i in plan:
        shape = SHAPE_SETS[set_name]["shapes"][i]
        dtype = SHAPE_SETS[set_name]["dtype"]
        names, _ = budget.planned(op, shape[1])
        nbytes = _input_bytes(op, shape, getattr(torch, dtype))
        for name in names:
            if name == "torch":
                continue
            key = (op.name, set_name, shape[1], name)
            item = dict(key=key, op=op.name, set=set_name, shape=shape, dtype=dtype, impl=name,
                        mem=WARM_MEM_FACTOR.get(name, 8) * nbytes, after=None)
            if name == "compile":  # a new graph per shape: nothing to share
                compiles.append(item)
            else:
                item["after"] = first.setdefault((op.name, set_name, name), key)
                items.append(item if item["after"] != key else {**item, "after": None})
    return items + compiles


def _warm_worker(conn, cfg: dict) -> None:
    """A warm-up worker: runs the first forward+backward of each item it is sent, answers with
    its wall time, error and the autotuning configs it chose; None ends it."""
    share_caches(cfg["cache_dir"], cfg["use_compile"], warm=True)
    torch.set_float32_matmul_precision(cfg.get("fp32_matmul", "highest"))  # the kernels the loop will run
    device = torch.device(cfg["device"])  # torch's thread count stays: it is in inductor's cache key
    tuner = None
    if device.type == "cuda":
        tuner = AutotuneBound(cfg["autotune_configs"], cfg["pins"])
        tuner.install()
    ops = {op.name: op for op in OPS}
    compiled: dict[str, Callable] = {}
    conn.send(dict(ready=os.getpid()))
    while (item := conn.recv()) is not None:
        before = dict(tuner.chosen) if tuner else {}
        res = dict(key=item["key"], error=None, oom=False, broken=False)
        t0 = time.perf_counter()
        try:
            op = ops[item["op"]]
            if item["impl"] == "compile":
                fn = compiled[op.name] = compiled.get(op.name) or impl_fn(op, "compile")
            else:
                fn = impl_fn(op, item["impl"])
            B, L, D = item["shape"]
            torch.manual_seed(0)  # the timed loop's inputs: same values, same layout
            a = _prepare(op.make(B, L, D, getattr(torch, item["dtype"]), device), op.grad_args)
            _fwd_bwd(fn, a, op.grad_args)
            del a
            if device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as e:  # noqa: BLE001 - recorded in the row
            res["error"] = _err_text(e)
            res["oom"] = isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e)
        res["warm_s"] = time.perf_counter() - t0
        if device.type == "cuda":
            try:  # a sticky CUDA error leaves this process useless: say so and end
                torch.cuda.synchronize()
                torch.cuda.empty_cache()  # give the memory back to the other workers
            except Exception:  # noqa: BLE001
                res["broken"] = True
        if tuner is not None:
            res["chosen"] = {k: v for k, v in tuner.chosen.items() if before.get(k) != v}
        conn.send(res)
        if res["broken"]:
            break


def warm_up(items: list[dict], workers: int, cfg: dict, limit: float, mem_budget: float,
            on_chosen: Callable[[dict], None] = lambda chosen: None, log=print,
            target: Callable | None = None) -> tuple[dict, dict]:
    """Runs ``items`` on ``workers`` spawned processes for at most ``limit`` seconds. Returns
    (key -> dict(status, warm_s, error), stats). Status: ok; error (the impl raised: recorded as
    the row's error); died (its worker died: same); cut (still running at ``limit``: abandoned);
    not run (never started before ``limit``). At most ``mem_budget`` estimated GPU bytes run at
    once (an item alone always may); an item that ran out of memory is tried once more alone.
    ``on_chosen`` gets the autotuning configs each item chose (the timed loop's pins); ``target``:
    the worker function (default :func:`_warm_worker`; tests give others)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    t_start = time.perf_counter()
    results: dict[tuple, dict] = {}
    pending = list(items)
    procs: dict[int, tuple] = {}  # slot -> (process, connection)
    busy: dict[int, tuple[dict, float]] = {}  # slot -> (item, start)
    ready: set[int] = set()
    stats = dict(workers=workers, items=len(items), started=0, replaced=0, max_running=0, max_mem_gib=0.0,
                 ready_s=None)
    retried: set[tuple] = set()
    stopped: list = []  # processes told to end, joined at the end

    def start(slot):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target or _warm_worker, args=(child, cfg), daemon=True, name=f"kernels-warm-{slot}")
        p.start()
        child.close()
        procs[slot] = (p, parent)
        stats["started"] += 1

    def finish(item, status, warm_s, error=None):
        results[item["key"]] = dict(status=status, warm_s=warm_s, error=error)
        op, set_name, L, impl = item["key"]
        log(f"  warm [{len(results)}/{len(items)} {time.perf_counter() - t_start:4.0f} s] {status:7s} "
            f"{op:18s} {set_name:5s} L={L:<6d} {impl:8s} {warm_s or 0:6.1f} s" + (f"  {error}" if error else ""),
            flush=True)

    def stop(slot, kill):
        p, conn = procs.pop(slot)
        ready.discard(slot)
        try:
            if kill:
                p.terminate()
            else:
                conn.send(None)
        except (OSError, ValueError):
            pass
        return p

    for slot in range(min(workers, len(items))):
        start(slot)
    try:
        while pending or busy:
            now = time.perf_counter() - t_start
            if now > limit:
                for slot, (item, t0) in list(busy.items()):
                    stopped.append(stop(slot, kill=True))
                    finish(item, "cut", time.perf_counter() - t0, f"cut at --warm-limit {limit:g} s")
                busy.clear()
                for item in pending:
                    finish(item, "not run", None, f"not started before --warm-limit {limit:g} s")
                pending.clear()
                break
            in_use = sum(it["mem"] for it, _ in busy.values())
            for slot in sorted(ready - set(busy)):
                pick = next((it for it in pending if (it["after"] is None or it["after"] in results)
                             and (not busy or (not it.get("alone") and in_use + it["mem"] <= mem_budget))), None)
                if pick is None:
                    break
                pending.remove(pick)
                procs[slot][1].send(pick)
                busy[slot] = (pick, time.perf_counter())
                in_use += pick["mem"]
                stats["max_running"] = max(stats["max_running"], len(busy))
                stats["max_mem_gib"] = max(stats["max_mem_gib"], in_use / 2**30)
            waits = {procs[s][1]: s for s in procs}
            waits.update({procs[s][0].sentinel: s for s in procs})
            for obj in wait(list(waits), timeout=max(0.1, min(5.0, limit - now))):
                slot = waits[obj]
                if slot not in procs:
                    continue
                p, conn = procs[slot]
                msg = None
                if obj is conn or conn.poll():
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        msg = None
                if msg is not None and "ready" in msg:
                    ready.add(slot)
                    if stats["ready_s"] is None:
                        stats["ready_s"] = time.perf_counter() - t_start
                    continue
                if msg is not None:
                    item, t0 = busy.pop(slot)
                    if msg["oom"] and item["key"] not in retried and len(busy) > 0:
                        retried.add(item["key"])  # again when it can run alone
                        pending.insert(0, {**item, "alone": True})
                    else:
                        finish(item, "ok" if msg["error"] is None else "error", msg["warm_s"], msg["error"])
                    on_chosen(msg.get("chosen") or {})
                    if not msg["broken"]:
                        continue
                    stopped.append(stop(slot, kill=True))
                elif not p.is_alive() or obj is p.sentinel:
                    p.join(1)
                    procs.pop(slot, None)
                    ready.discard(slot)
                    if slot in busy:
                        item, t0 = busy.pop(slot)
                        finish(item, "died", time.perf_counter() - t0, f"warm-up worker died (exit code {p.exitcode})")
                else:
                    continue
                if pending and stats["replaced"] < workers:  # a fresh worker in the dead one's place
                    start(slot)
                    stats["replaced"] += 1
            if not procs and pending:
                for item in pending:
                    finish(item, "not run", None, "no warm-up worker left")
                pending.clear()
    finally:
        stopped += [stop(slot, kill=slot in busy) for slot in list(procs)]
        deadline = time.perf_counter() + 10  # idle workers end on None, killed ones on SIGTERM
        for p in stopped:
            p.join(max(0.0, deadline - time.perf_counter()))
            if p.is_alive():
                p.kill()
                p.join()
    stats["wall_s"] = time.perf_counter() - t_start
    for status in ("ok", "error", "died", "cut", "not run"):
        stats[status.replace(" ", "_")] = sum(r["status"] == status for r in results.values())
    return results, stats


# ----------------------------------------------------------------------------- plan and run
class Budget:
    """What to run in each row (see the module doc's bounds): the compile baseline's rules, the
    per-impl timing prediction and the warm-up's outcome."""

    def __init__(self, a, use_compile: bool):
        self.a, self.use_compile = a, use_compile
        self.compile_s = 0.0
        self.compiled: dict[str, Callable] = {}  # one torch.compile wrapper per op, reused across shapes
        self.last: dict[tuple, tuple[int, float]] = {}  # (op, set, impl) -> (L, timing seconds)
        self.compile_lost: set[str] = set()  # ops where compile was slower than eager (at a smaller L)
        self.warm: dict[tuple, dict] | None = None  # (op, set, L, impl) -> warm-up result; None: no warm-up

    def planned(self, op: OpBench, L: int) -> tuple[list[str], dict]:
        """The impls a row runs by the static rules (known before any timing), and why others are not."""
        names, skips = ["triton", "torch"], {}
        if self.use_compile:
            if not op.compile:
                skips["compile"] = "skipped: the reference is a per-step loop"
            elif L > self.a.compile_max_len:
                skips["compile"] = f"skipped: L > --compile-max-len {self.a.compile_max_len}"
            else:
                names.append("compile")
        return names + list(op.extra.get("baselines", {})), skips

    def impls(self, op: OpBench, set_name: str, L: int) -> tuple[dict, dict]:
        a = self.a
        names, skips = self.planned(op, L)
        impls = {}
        for name in names:
            w = None if self.warm is None or name == "torch" else self.warm.get((op.name, set_name, L, name))
            if w is not None and w["status"] in ("error", "died"):
                skips[name] = f"warm-up: {w['error']}"  # do not run again what failed or crashed a worker
            elif name == "compile" and self.warm is not None and (w is None or w["status"] != "ok"):
                skips[name] = f"skipped: not compiled in the warm-up ({w['error'] if w else 'not planned'})"
            elif name == "compile" and self.compile_s > a.compile_budget:
                skips[name] = f"skipped: --compile-budget {a.compile_budget:g} s spent"
            elif name == "compile" and op.name in self.compile_lost:
                skips[name] = "skipped: slower than eager at a smaller L"
            elif name == "compile":
                if op.name not in self.compiled:
                    self.compiled[op.name] = impl_fn(op, name)
                impls[name] = self.compiled[op.name]
            else:
                impls[name] = impl_fn(op, name)
        for name in list(impls):
            prev = self.last.get((op.name, set_name, name))
            if name != "triton" and prev is not None and prev[1] * L / prev[0] > a.max_impl_s:
                skips[name] = (f"skipped: its timing took {prev[1]:.0f} s at L={prev[0]} "
                               f"(> --max-impl-s {a.max_impl_s:g} predicted)")
                del impls[name]
        return impls, skips

    def record(self, row: dict) -> None:
        self.compile_s += row.get("setup_s_compile") or 0.0
        key = (row["op"], row["shape_set"])
        mc, mt = row.get("ms_compile"), row.get("ms_torch")
        if mc is not None and mt is not None and mc > mt:
            self.compile_lost.add(row["op"])
        for k, v in row.items():
            if k.startswith("total_s_") and row.get("ms_" + k[8:]) is not None:
                self.last[(*key, k[8:])] = (row["L"], v)


def print_plan(plan, budget: Budget) -> None:
    print(f"plan: {len(plan)} rows, timed in this order (breadth-first across the sets: a --time-limit "
          "cut drops the largest shapes)")
    for k, (set_name, op, i) in enumerate(plan):
        shape = SHAPE_SETS[set_name]["shapes"][i]
        names, skips = budget.planned(op, shape[1])
        print(f"  {k + 1:3d} {op.name:18s} {set_name:5s} {str(shape):18s} {' '.join(names)}"
              + (f"  (no {', '.join(skips)})" if skips else ""))


def main(a):
    """Runs the table; the cache folder is shared with the warm-up's workers (a temporary one,
    removed at the end, unless ``--cache-dir``)."""
    import shutil
    import tempfile

    cache_dir = a.cache_dir or tempfile.mkdtemp(prefix="kernels-bench-cache-")
    try:
        _run(a, cache_dir)
    finally:
        if a.cache_dir is None:
            shutil.rmtree(cache_dir, ignore_errors=True)


def _run(a, cache_dir: str):
    start = time.perf_counter()
    torch.set_float32_matmul_precision(a.fp32_matmul)
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
    share_caches(cache_dir, use_compile, warm=a.warm_workers > 0)
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
    pins_out = out.with_suffix(".autotune.json")
    meta = dict(fp32_matmul=a.fp32_matmul, torch=torch.__version__, device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                interpret=os.environ.get("TRITON_INTERPRET", "0"), argv=sys.argv[1:], hbm_tbs=a.hbm_tbs)
    tuner = None
    if device.type == "cuda":
        pins = json.loads(Path(a.autotune_pins).read_text())["chosen"] if a.autotune_pins else {}
        tuner = AutotuneBound(a.autotune_configs, pins)
        tuner.install()
        meta["autotune"] = (f"pinned from {a.autotune_pins} where found, else " if pins else "") + (
            f"at most {a.autotune_configs} configs per key" if a.autotune_configs > 0 else "all configs")
    try:
        import triton

        meta["triton"] = triton.__version__
    except Exception:
        pass
    budget = Budget(a, use_compile)
    checked: set[tuple[str, str]] = set()
    rows, plan = [], _plan(sets, names)
    print_plan(plan, budget)
    if a.warm_workers > 0 and plan:
        items = warm_items(plan, budget)
        counts = {n: sum(it["impl"] == n for it in items) for n in impls if n != "torch"}
        limit = min(a.warm_limit, a.time_limit)
        print(f"warm-up: {len(items)} first calls ({', '.join(f'{n} {c}' for n, c in counts.items())}) on "
              f"{a.warm_workers} workers, at most {limit:g} s; ours and the external baselines first "
              "(an impl's later shapes after its first), then torch.compile's", flush=True)
        mem_budget = float("inf")
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info()
            mem_budget = 0.85 * free - a.warm_workers * WARM_CONTEXT_BYTES
        cfg = dict(cache_dir=cache_dir, use_compile=use_compile, device=a.device, fp32_matmul=a.fp32_matmul,
                   autotune_configs=a.autotune_configs, pins=dict(tuner.pins) if tuner else {})

        def on_chosen(chosen):  # the workers' tuned configs: pinned for the timed loop
            if tuner is not None:
                tuner.pins.update(chosen)
                tuner.chosen.update(chosen)

        budget.warm, meta["warm"] = warm_up(items, a.warm_workers, cfg, limit, mem_budget, on_chosen)
        meta["warm_s"] = meta["warm"]["wall_s"]
        print(f"warm-up done in {meta['warm_s']:.0f} s: " + ", ".join(
            f"{k.replace('_', ' ')} {meta['warm'][k]}" for k in ("ok", "error", "died", "cut", "not_run")), flush=True)
        _write(out, meta, rows)
        if tuner is not None:
            _atomic_write(pins_out, json.dumps(dict(meta=meta, chosen=tuner.chosen), indent=1))
    for k, (set_name, op, i) in enumerate(plan):
        elapsed = time.perf_counter() - start
        if elapsed > a.time_limit:
            meta["stopped"] = f"--time-limit {a.time_limit:g} s reached after {len(rows)} of {len(plan)} rows"
            print(f"! {meta['stopped']}", flush=True)
            break
        shape = SHAPE_SETS[set_name]["shapes"][i]
        dtype = getattr(torch, SHAPE_SETS[set_name]["dtype"])
        check = a.check == "all" or (a.check == "first" and (op.name, set_name) not in checked)
        checked.add((op.name, set_name))
        row_impls, skips = budget.impls(op, set_name, shape[1])
        cache0 = compile_cache_counts()
        row = bench_op(op, set_name, shape, dtype, device, row_impls, skips, a, check)
        if "compile" in row_impls:  # e.g. "aot_hit 1": the compile baseline loaded the warm-up's graphs
            cache1 = compile_cache_counts()
            row["compile_cache"] = " ".join(f"{k} {v - cache0.get(k, 0)}" for k, v in cache1.items()
                                            if v != cache0.get(k, 0)) or "no compile"
        if budget.warm is not None:  # what the warm-up spent on this row, and where it did not finish
            for name in budget.planned(op, shape[1])[0]:
                w = budget.warm.get((op.name, set_name, shape[1], name))
                if w is not None:
                    row[f"warm_s_{name}"] = w["warm_s"]
                    if w["status"] in ("cut", "not run") and name in row_impls:
                        row[f"warm_error_{name}"] = w["error"]
        budget.record(row)
        row["elapsed_s"] = time.perf_counter() - start
        rows.append(row)
        setup = sum(v for key, v in row.items() if key.startswith("setup_s_"))
        warm = sum(v or 0.0 for key, v in row.items() if key.startswith("warm_s_"))
        print(f"  [{k + 1}/{len(plan)} {row['elapsed_s']:5.0f} s] {op.name:18s} {set_name:5s} {shape}  "
              f"triton {_fmt(row.get('ms_triton'), '.3f')} ms  floor {_fmt(row.get('floor_ms'), '.3f')} ms  "
              f"vs_best {_fmt(row.get('vs_best'), '.2f')}  warm {warm:.1f} s  setup {setup:.1f} s  "
              f"check {row.get('check_s', 0):.1f} s", flush=True)
        _write(out, meta, rows)
        if tuner is not None:
            _atomic_write(pins_out, json.dumps(dict(meta=meta, chosen=tuner.chosen), indent=1))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print()
    print_table(rows, impls)
    meta["total_s"] = time.perf_counter() - start
    meta["setup_s"] = sum(v for r in rows for key, v in r.items() if key.startswith("setup_s_"))
    if use_compile:
        meta["compile_cache"] = compile_cache_counts()
    _write(out, meta, rows)
    print(f"\nwrote {out} and {out.with_suffix('.csv')} ({meta['total_s']:.0f} s: warm-up "
          f"{meta.get('warm_s', 0):.0f} s, set-up in the timed loop {meta['setup_s']:.0f} s)")


if __name__ == "__main__":
    main(ARGS)
