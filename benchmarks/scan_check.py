"""Selective scan on the GPU at the model's real shapes: correctness of the Triton kernel against
the torch reference in bf16 (output and every gradient), its time against the HBM floor, and
optionally a sweep of launch configs (each one checked too: Triton miscompiles are shape- and
config-dependent, so a config is only trusted where it was compared).

Shapes: MAD's Mamba, (B, L, D) = (128, L, 128) -> E = 256 channels, d_state 4, and a long one
(8, 4096, 1024) -> E = 2048. Inputs as in ``benchmarks/kernels.py`` (time-major tensors passed as
transposed views, dt bias + softplus, D and the silu(z) gate fused). The floor: forward, every
input read and the output written once; backward, every input and dy read and every gradient
written once (the chunk checkpoints the kernels keep, ``b * ceil(L / T) * E * N`` fp32, are not
counted), at ``--hbm-tbs`` TB/s.

    python benchmarks/scan_check.py --device cuda --sweep --out $OUT/scan_check.json
    python benchmarks/scan_check.py --device cuda --sweep --sweep-variant lane   # A/B: default vs "lane"

Exit status 1 when any compared config exceeds ``--tol`` (relative error, max |a-b| / max |b|).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels import _ss_make, hbm_floor_bytes  # noqa: E402

from mad_bench.ops.selective_scan import selective_scan  # noqa: E402
from mad_bench.ops.selective_scan import triton as ss_triton  # noqa: E402

SHAPES = [(128, 256, 128), (128, 1024, 128), (8, 4096, 1024)]
SWEEP = [  # T, BLOCK_D, num_warps and pipelining stages per direction (the default first)
    dict(T=16, BLOCK_D=32, num_warps_fwd=4, num_warps_bwd=4, stages_fwd=2, stages_bwd=2),
    dict(T=32, BLOCK_D=32, num_warps_fwd=4, num_warps_bwd=4, stages_fwd=1, stages_bwd=1),
    dict(T=32, BLOCK_D=32, num_warps_fwd=4, num_warps_bwd=4, stages_fwd=2, stages_bwd=2),
    dict(T=16, BLOCK_D=8, num_warps_fwd=1, num_warps_bwd=1, stages_fwd=1, stages_bwd=1),
    dict(T=32, BLOCK_D=8, num_warps_fwd=1, num_warps_bwd=1, stages_fwd=2, stages_bwd=2),
    dict(T=16, BLOCK_D=16, num_warps_fwd=2, num_warps_bwd=2, stages_fwd=2, stages_bwd=2),
    dict(T=16, BLOCK_D=64, num_warps_fwd=8, num_warps_bwd=8, stages_fwd=1, stages_bwd=1),
    dict(T=64, BLOCK_D=32, num_warps_fwd=4, num_warps_bwd=4, stages_fwd=1, stages_bwd=1),
    dict(T=32, BLOCK_D=16, num_warps_fwd=4, num_warps_bwd=4, stages_fwd=1, stages_bwd=1),
    # variant "lane" (one channel per lane: BLOCK_D = 32 x num_warps; T 8, since at T 16 its
    # backward spills ~1.7 KB a thread on sm_90, benchmarks/scan_sm90.py)
    dict(variant_fwd="lane", variant_bwd="lane", T=8, BLOCK_D=32, num_warps_fwd=1, num_warps_bwd=1,
         stages_fwd=1, stages_bwd=1),
    dict(variant_fwd="lane", variant_bwd="lane", T=8, BLOCK_D=32, num_warps_fwd=1, num_warps_bwd=1,
         stages_fwd=2, stages_bwd=2),
    dict(variant_fwd="lane", variant_bwd="lane", T=8, BLOCK_D=64, num_warps_fwd=2, num_warps_bwd=2,
         stages_fwd=1, stages_bwd=1),
    dict(variant_fwd="lane", variant_bwd="lane", T=8, BLOCK_D=16, num_warps_fwd=1, num_warps_bwd=1,
         stages_fwd=1, stages_bwd=1),
    # today's forward with the "lane" backward (the checkpoints of both variants agree)
    dict(variant_fwd="tile", variant_bwd="lane", T=8, BLOCK_D=32, num_warps_fwd=4, num_warps_bwd=1,
         stages_fwd=2, stages_bwd=1),
]
GRADS = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]


def _call(impl):
    def f(u, delta, A, Bm, Cm, Dv, z, bias):
        t = lambda x: x.transpose(1, 2)  # noqa: E731
        return selective_scan(t(u), t(delta), A, t(Bm), t(Cm), Dv, t(z), bias, True, chunk_size=64, impl=impl)
    return f


def _leaves(args):
    return [a.detach().clone().requires_grad_(True) for a in args]


def _fwd_bwd(fn, args, dy):
    y = fn(*args)
    gs = torch.autograd.grad(y, args, dy)
    return [y, *gs]


def _rel(a, b):
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sweep", action="store_true", help="also time and check the configs of SWEEP")
    p.add_argument("--sweep-variant", default=None, choices=sorted(ss_triton.VARIANTS),
                   help="sweep only the configs whose backward is this variant (the default config always runs)")
    p.add_argument("--tol", type=float, default=2e-2, help="max relative error vs the torch reference")
    p.add_argument("--hbm-tbs", type=float, default=4.8)
    p.add_argument("--shapes", default=None, help="B,L,D[;B,L,D...] instead of the real shapes")
    p.add_argument("--out", default=None, help="JSON of the results")
    a = p.parse_args(argv)
    import triton.testing

    dev = torch.device(a.device)
    cpu = dev.type == "cpu"  # interpreter smoke run (TRITON_INTERPRET=1): fp32, no timing
    dtype = torch.float32 if cpu else torch.bfloat16
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes.split(";")] if a.shapes else SHAPES
    results, failed = [], False
    for B, L, D in shapes:
        torch.manual_seed(0)
        args = _ss_make(B, L, D, dtype, dev)
        dy = torch.randn(B, 2 * D, L, device=dev).to(dtype)
        ref = _fwd_bwd(_call("torch"), _leaves(args), dy)
        ins = sum(t.numel() * t.element_size() for t in args)
        out_b = dy.numel() * dy.element_size()
        floor_fwd = (ins + out_b) / (a.hbm_tbs * 1e12) * 1e3
        floor_all = hbm_floor_bytes(args, [dy], range(len(args))) / (a.hbm_tbs * 1e12) * 1e3
        print(f"(B, L, D) = ({B}, {L}, {D}), E {2 * D}, N {args[2].shape[1]}: HBM floor fwd {floor_fwd:.3f} ms, "
              f"fwd+bwd {floor_all:.3f} ms at {a.hbm_tbs} TB/s", flush=True)
        sweep = [c for c in SWEEP if a.sweep_variant in (None, c.get("variant_bwd", "tile"))]
        configs = [{}] + (sweep if a.sweep else [])
        for cfg in configs:
            ss_triton.CONFIG_OVERRIDE.clear()
            ss_triton.CONFIG_OVERRIDE.update(cfg)
            res = dict(B=B, L=L, D=D, config=cfg or "default", floor_fwd_ms=floor_fwd, floor_ms=floor_all)
            try:
                lv = _leaves(args)
                got = _fwd_bwd(_call("triton"), lv, dy)
                errs = {n: _rel(g, r) for n, g, r in zip(["y", *GRADS], got, ref)}
                res["err"] = errs
                res["ok"] = all(e <= a.tol for e in errs.values())
                failed |= not res["ok"]
                if cpu:
                    print(f"  {str(res['config']):60s} errors {errs}", flush=True)
                    results.append(res)
                    continue
                fwd_args = [t.detach() for t in lv]
                res["fwd_ms"] = triton.testing.do_bench(lambda: _call("triton")(*fwd_args), return_mode="median")
                res["ms"] = triton.testing.do_bench(lambda: _fwd_bwd(_call("triton"), lv, dy), return_mode="median")
                res["x_floor"] = res["ms"] / floor_all
                res["x_floor_fwd"] = res["fwd_ms"] / floor_fwd
                worst = max(errs, key=errs.get)
                print(f"  {str(res['config']):80s} fwd {res['fwd_ms']:.3f} ms ({res['x_floor_fwd']:.1f}x floor)  "
                      f"fwd+bwd {res['ms']:.3f} ms ({res['x_floor']:.1f}x)  worst err {worst} {errs[worst]:.1e}"
                      f"{'' if res['ok'] else '  FAIL'}", flush=True)
            except Exception as e:  # noqa: BLE001 - a config that does not compile is a result too
                res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                print(f"  {str(res['config']):80s} ERROR {res['error']}", flush=True)
            results.append(res)
        ts = [r for r in results if r["B"] == B and r["L"] == L and r.get("ok") and "ms" in r]
        if ts:
            best = min(ts, key=lambda r: r["ms"])
            print(f"  best: {best['config']} {best['ms']:.3f} ms = {best['x_floor']:.1f}x the floor")
        del ref
        if not cpu:
            torch.cuda.empty_cache()
    ss_triton.CONFIG_OVERRIDE.clear()
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        name = "cpu" if cpu else torch.cuda.get_device_name()
        tmp.write_text(json.dumps(dict(torch=torch.__version__, device=name, rows=results),
                                  indent=1))
        os.replace(tmp, out)
    print("FAIL: a config exceeds --tol" if failed else "all compared configs within --tol")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
