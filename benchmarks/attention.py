"""Small-head causal attention: the Triton paths against SDPA (flash on CUDA), forward +
backward in bf16, at the engine's shapes (G members x batch 128 folded, 16 heads of 8).

    python benchmarks/attention.py --out attention.json
    python benchmarks/attention.py --shapes 768,16,128,8 768,16,256,8 768,8,128,16 \\
        --short-configs '{}' '{"BM_BWD": 16, "num_warps_bwd": 4}' --out attention.json

Variants per shape: ``tiled`` (the flash-style Triton kernels), ``short`` once per config of
``--short-configs`` (the short-sequence path, L <= 256; each config is a
``triton.CONFIG_OVERRIDE``), and ``sdpa``. Inputs are laid out as ``--layouts`` says:
``contiguous`` ``[B, H, L, d]`` tensors, or ``qkv-view``, views of one ``[B, L, 3, H, d]``
projection output as the attention primitive passes v (and q, k under inductor). Per variant:
the relative error of the output and of each gradient against SDPA in fp32 (computed on fp32
copies of the same inputs), the median forward and forward + backward milliseconds
(``triton.testing.do_bench``) and fwd + bwd against SDPA. Prints a table; writes JSON.
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
from mad_bench.ops.attention import triton as attn_triton  # noqa: E402

SHAPES = ["768,16,128,8", "768,16,256,8", "768,16,512,8", "768,16,1024,8", "768,8,128,16", "128,2,1024,64"]
SHORT_CONFIGS = ['{}', '{"BM_BWD": 16, "num_warps_bwd": 4}',
                 '{"BM_FWD": 32, "KEY_SPLIT": 2, "BM_BWD": 16, "num_warps_bwd": 4}',
                 '{"BM_FWD": 128, "num_warps_fwd": 8, "KEY_SPLIT": 2}']


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def shape_arg(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"a shape is B,H,L,d (four positive integers); got {text!r}")
    return tuple(int(p) for p in parts)


def config_arg(text: str) -> dict:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--short-configs: {text!r} is not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise argparse.ArgumentTypeError(f"--short-configs: each config is a JSON object; got {text!r}")
    return cfg


def inputs(shape, layout):
    """q, k, v (bf16, requiring grad) in ``layout``."""
    B, H, L, d = shape
    if layout == "contiguous":
        return [torch.randn(*shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
    qkv = torch.randn(B, L, 3, H, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    return [qkv[:, :, i].transpose(1, 2) for i in range(3)]


def variants(shape, configs):
    """(name, config, fn(q, k, v, window)) for every variant that applies to ``shape``."""
    out = [("tiled", None, lambda q, k, v, w: attn_triton.attention_triton(q, k, v, w, short=False))]
    if attn_triton.short_path(shape[2], shape[3]):
        out += [("short", cfg, lambda q, k, v, w: attn_triton.attention_triton(q, k, v, w, short=True))
                for cfg in configs]
    out.append(("sdpa", None, lambda q, k, v, w: causal_attention(q, k, v, w, impl="torch")))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--shapes", nargs="+", type=shape_arg, default=[shape_arg(s) for s in SHAPES],
                    help="B,H,L,d each (B = members x batch)")
    ap.add_argument("--layouts", nargs="+", choices=["contiguous", "qkv-view"], default=["contiguous", "qkv-view"])
    ap.add_argument("--short-configs", nargs="+", type=config_arg, default=[config_arg(c) for c in SHORT_CONFIGS],
                    help="JSON objects of CONFIG_OVERRIDE keys (BM_FWD, BM_BWD, num_warps_fwd, num_warps_bwd, "
                         "KEY_SPLIT)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    print(f"{'B,H,L,d':20s} {'layout':10s} {'variant':44s} {'err o':>8s} {'err dq':>8s} {'err dk':>8s} "
          f"{'err dv':>8s} {'fwd ms':>7s} {'f+b ms':>7s} {'/sdpa':>6s}", flush=True)
    for shape in args.shapes:
        for layout in args.layouts:
            q, k, v = inputs(shape, layout)
            do = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
            ref_in = [t.detach().float().requires_grad_(True) for t in (q, k, v)]
            ref = causal_attention(*ref_in, args.window, impl="torch")
            ref_g = torch.autograd.grad(ref, ref_in, do.float())
            timed = []
            for name, cfg, fn in variants(shape, args.short_configs):
                attn_triton.CONFIG_OVERRIDE.clear()
                attn_triton.CONFIG_OVERRIDE.update(cfg or {})
                out = fn(q, k, v, args.window)
                got_g = torch.autograd.grad(out, [q, k, v], do)
                errs = [rel(out, ref)] + [rel(a, b) for a, b in zip(got_g, ref_g)]

                def fwd():
                    with torch.no_grad():
                        fn(q, k, v, args.window)

                def fwd_bwd():
                    torch.autograd.grad(fn(q, k, v, args.window), [q, k, v], do)

                t_fwd = do_bench(fwd, warmup=25, rep=100, return_mode="median")
                t_all = do_bench(fwd_bwd, warmup=25, rep=100, return_mode="median")
                timed.append({"shape": shape, "layout": layout, "window": args.window, "variant": name,
                              "config": cfg, "err": errs, "fwd_ms": t_fwd, "ms": t_all})
            attn_triton.CONFIG_OVERRIDE.clear()
            sdpa_ms = timed[-1]["ms"]
            for row in timed:
                row["vs_sdpa"] = row["ms"] / sdpa_ms
                label = row["variant"] + ("" if row["config"] is None else " " + json.dumps(row["config"]))
                print(f"{','.join(map(str, shape)):20s} {layout:10s} {label[:44]:44s} "
                      + " ".join(f"{e:8.1e}" for e in row["err"])
                      + f" {row['fwd_ms']:7.3f} {row['ms']:7.3f} {row['vs_sdpa']:6.2f}", flush=True)
            rows += timed
            if args.out:
                Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
