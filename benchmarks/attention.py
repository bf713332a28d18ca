"""Small-head causal attention: the Triton kernel against SDPA (flash on CUDA), forward +
backward in bf16, at the engine's shapes (G members x batch 128 folded, 16 heads of 8).

    python benchmarks/attention.py --out attention.json

Per shape: the relative error of the output and of each gradient against SDPA in fp32 (the
reference computed on fp32 copies of the same inputs), then the median fwd+bwd milliseconds
of each (``triton.testing.do_bench``) and their ratio. Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from mad_bench.ops.attention import causal_attention  # noqa: E402

SHAPES = [(768, 16, 128, 8), (768, 16, 256, 8), (768, 16, 512, 8), (768, 16, 1024, 8),
          (768, 8, 128, 16), (128, 2, 1024, 64)]


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    print(f"{'B,H,L,d':22s} {'err o':>8s} {'err dq':>8s} {'err dk':>8s} {'err dv':>8s} "
          f"{'triton ms':>10s} {'sdpa ms':>8s} {'ratio':>6s}", flush=True)
    for shape in SHAPES:
        q, k, v = (torch.randn(*shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
        ref_in = [t.detach().float().requires_grad_(True) for t in (q, k, v)]
        ref = causal_attention(*ref_in, args.window, impl="torch")
        ref_g = torch.autograd.grad(ref, ref_in, do.float())
        out = causal_attention(q, k, v, args.window, impl="triton")
        got_g = torch.autograd.grad(out, [q, k, v], do)
        errs = [rel(out, ref)] + [rel(a, b) for a, b in zip(got_g, ref_g)]

        def run(impl):
            o = causal_attention(q, k, v, args.window, impl=impl)
            torch.autograd.grad(o, [q, k, v], do)

        t_tri = do_bench(lambda: run("triton"), warmup=25, rep=100, return_mode="median")
        t_ref = do_bench(lambda: run("torch"), warmup=25, rep=100, return_mode="median")
        row = {"shape": shape, "window": args.window, "err": errs, "triton_ms": t_tri, "sdpa_ms": t_ref,
               "ratio": t_tri / t_ref}
        rows.append(row)
        print(f"{str(shape):22s} " + " ".join(f"{e:8.1e}" for e in errs)
              + f" {t_tri:10.3f} {t_ref:8.3f} {t_tri / t_ref:6.2f}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
