"""Language-model benchmarks (GPU): training throughput against plain PyTorch, and the data of
the proxy figure (MAD score vs LM validation loss).

    python benchmarks/lm.py throughput --out DIR [--steps 30 --batch-size 16 --seq-len 1024]
    python benchmarks/lm.py proxy --out DIR [--steps 800 --specs transformer hyena ...]
    python benchmarks/lm.py check        # CPU: the plain model equals mad_bench's on shared weights

throughput: architectures/lm/transformer-125m.yaml (the MAD transformer at GPT-2 small's shape;
125M parameters with a 50304-token vocabulary) compiled by mad_bench, and the same model written
in plain PyTorch below (nanoGPT-style), each eager and under torch.compile, trained with the same
step (AdamW, bf16 autocast, clipping) on random tokens. Tokens/s and model FLOPs utilisation
(6 N FLOPs per token for the N parameters in matmuls, plus 12 * layers * width * seq_len for
attention scores and values, fwd + bwd; peak from --peak-tflops, H200 bf16 dense: 989) and the
ratio mad_bench / plain, per mode. Writes throughput.json and throughput.csv under --out.

proxy: the six reference specs at ~20M parameters (architectures/lm/*-20m.yaml) trained by
``madbench lm``'s trainer on the standard library's sources for the same number of steps (a fixed
token budget). Their rows go to DIR/results (a results store: merge several calls' runs/ folders
into one); with the MAD scores of --mad-results (default results/reference-cpu, which lacks mh-hyena, gla and deltanet) the proxy plot
and Spearman's rho are written (proxy.png, proxy.json) for the specs present in both.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mad_bench.compiler import build_model  # noqa: E402
from mad_bench.spec import load_spec  # noqa: E402

SPEC_125M = ROOT / "architectures" / "lm" / "transformer-125m.yaml"
PROXY_SPECS = ["transformer", "hyena", "mh-hyena", "mamba", "gla", "deltanet"]


# -- the same transformer in plain PyTorch -------------------------------------------------

class PlainAttention(nn.Module):
    """Causal MHA, fused qkv, no biases, rotary on interleaved pairs of the first ``rot`` dims."""

    def __init__(self, d: int, heads: int, rot: int, max_len: int, base: float = 10000.0):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        freqs = base ** (-torch.arange(0, rot, 2, dtype=torch.float64) / rot)
        ang = torch.outer(torch.arange(max_len, dtype=torch.float64), freqs)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def rope(self, x):
        n = self.cos.shape[1]
        if n == 0:
            return x
        L = x.shape[2]
        cos, sin = self.cos[:L].to(x.dtype), self.sin[:L].to(x.dtype)
        a, b = x[..., 0:2 * n:2], x[..., 1:2 * n:2]
        rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
        return torch.cat((rotated, x[..., 2 * n:]), -1)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class PlainBlock(nn.Module):
    def __init__(self, d, heads, rot, inner, max_len):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.attn = PlainAttention(d, heads, rot, max_len)
        self.gate_up = nn.Linear(d, 2 * inner, bias=False)
        self.down = nn.Linear(inner, d, bias=False)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        g, u = self.gate_up(self.n2(x)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class PlainGPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, rot, inner, max_len, tie=True):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(PlainBlock(d, heads, rot, inner, max_len) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.embed.weight

    def forward(self, tokens):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def plain_from_spec(spec, vocab: int, max_len: int) -> PlainGPT:
    attn, mlp = spec.layers
    assert attn.type == "attention" and mlp.type == "swiglu" and attn.window is None
    return PlainGPT(vocab, spec.d_model, spec.repeat, attn.n_heads, attn.rotary_dim, mlp.d_inner,
                    max_len, tie=spec.tie_embeddings)


def copy_weights(src, dst: PlainGPT) -> None:
    """mad_bench's parameters into the plain model (same shapes, other names)."""
    with torch.no_grad():
        dst.embed.weight.copy_(src.embed.weight)
        dst.norm.weight.copy_(src.stack.final_norm.weight)
        if dst.head.weight is not dst.embed.weight:
            dst.head.weight.copy_(src.head.weight)
        blocks = list(src.stack.blocks)
        for i, pb in enumerate(dst.blocks):
            a, m = blocks[2 * i], blocks[2 * i + 1]
            pb.n1.weight.copy_(a.norm.weight)
            pb.attn.qkv.weight.copy_(a.mixer.qkv.weight)
            pb.attn.out.weight.copy_(a.mixer.out.weight)
            pb.n2.weight.copy_(m.norm.weight)
            pb.gate_up.weight.copy_(m.mixer.gate_up.weight)
            pb.down.weight.copy_(m.mixer.down.weight)


def check(args) -> int:
    """The plain model is the same function as mad_bench's (a tiny width, on the CPU)."""
    spec = load_spec({"name": "t", "d_model": 64, "layers": [{"type": "attention", "n_heads": 4},
                      {"type": "swiglu", "d_inner": 96}], "repeat": 3, "tie_embeddings": True})
    torch.manual_seed(0)
    ours = build_model(spec, 300, 48)
    plain = plain_from_spec(spec, 300, 48)
    copy_weights(ours, plain)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.randint(0, 300, (2, 48))
    err = (ours(x) - plain(x)).abs().max().item()
    print(f"plain vs mad_bench logits: max abs difference {err:.2e}")
    return 0 if err < 1e-4 else 1


# -- throughput --------------------------------------------------------------------------------

def flops_per_token(model, spec, vocab: int, seq_len: int) -> tuple[float, int]:
    """(training FLOPs per token, N): 6 N over the parameters in matmuls (the embedding lookup
    is not one; a tied head is) plus 12 * layers * width * seq_len for attention (fwd + bwd)."""
    n = sum(p.numel() for p in model.parameters())
    n_matmul = n - (0 if spec.tie_embeddings else vocab * spec.d_model)
    n_attn = sum(layer.type == "attention" for layer in spec.all_layers)
    return 6.0 * n_matmul + 12.0 * n_attn * spec.d_model * seq_len, n


def time_training(model, args, device, vocab: int) -> tuple[float, float]:
    """(tokens/s, seconds per step) of AdamW + bf16 autocast + clipping on random tokens, after
    warm-up steps (compilation happens there)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, vocab, (args.batch_size, args.seq_len + 1), device=device, generator=gen)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    return args.batch_size * args.seq_len / dt, dt


def throughput(args) -> int:
    if not torch.cuda.is_available():
        print("throughput needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device("cuda")
    spec = load_spec(args.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for impl in ("mad_bench", "plain"):
        for mode in ("eager", "compile"):
            torch.manual_seed(0)
            model = (build_model(spec, args.vocab, args.seq_len) if impl == "mad_bench"
                     else plain_from_spec(spec, args.vocab, args.seq_len)).to(device)
            fpt, n = flops_per_token(model, spec, args.vocab, args.seq_len)
            run = torch.compile(model) if mode == "compile" else model
            t0 = time.perf_counter()
            tok_s, dt = time_training(run, args, device, args.vocab)
            mfu = tok_s * fpt / (args.peak_tflops * 1e12)
            row = {"impl": impl, "mode": mode, "params": n, "tokens_per_s": tok_s, "step_ms": dt * 1e3,
                   "mfu": mfu, "flops_per_token": fpt, "batch_size": args.batch_size,
                   "seq_len": args.seq_len, "vocab": args.vocab, "wall_s": time.perf_counter() - t0,
                   "device": torch.cuda.get_device_name(device), "torch": torch.__version__}
            rows.append(row)
            print(f"{impl:>9} {mode:>7}: {n / 1e6:.1f}M params  {tok_s:,.0f} tokens/s  "
                  f"{dt * 1e3:.1f} ms/step  MFU {mfu:.1%}", flush=True)
            del model, run
            torch.cuda.empty_cache()
    by = {(r["impl"], r["mode"]): r for r in rows}
    ratios = {mode: by["mad_bench", mode]["tokens_per_s"] / by["plain", mode]["tokens_per_s"]
              for mode in ("eager", "compile")}
    for mode, ratio in ratios.items():
        print(f"mad_bench / plain PyTorch tokens/s, {mode}: {ratio:.3f}")
    (out / "throughput.json").write_text(json.dumps({"rows": rows, "ratio_mad_bench_over_plain": ratios,
                                                     "spec": str(args.spec)}, indent=2))
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "throughput.csv", index=False)
    print(f"wrote {out / 'throughput.json'} and {out / 'throughput.csv'}")
    return 0


# -- the proxy figure's runs -----------------------------------------------------------------

def proxy(args) -> int:
    from mad_bench.lm.data import load_corpus
    from mad_bench.lm.train import LMConfig, train_lm
    from mad_bench.results.plots import proxy as proxy_plot, proxy_points, save_figure, spearman
    from mad_bench.results.store import ResultsStore

    out = Path(args.out)
    store = out / "results"
    cfg = LMConfig(corpus=args.corpus, max_bytes=args.max_bytes, seq_len=args.seq_len,
                   batch_size=args.batch_size, steps=args.steps, lr=args.lr, min_lr=args.lr / 10,
                   warmup_steps=max(1, args.steps // 20), eval_every=max(1, args.steps // 4),
                   val_windows=args.val_windows, compile=args.compile)
    corpus = load_corpus(cfg.corpus, cfg.max_bytes, cfg.val_fraction)
    print(f"corpus {corpus.describe()}; {args.steps} steps x {args.batch_size} x {args.seq_len} = "
          f"{args.steps * args.batch_size * args.seq_len / 1e6:.1f}M tokens per spec", flush=True)
    for name in args.specs:
        path = ROOT / "architectures" / "lm" / f"{name}-20m.yaml"
        t0 = time.perf_counter()
        try:
            r = train_lm(path, cfg, results=store, corpus=corpus, progress=False)
        except Exception as exc:  # noqa: BLE001 - one spec's failure must not lose the others
            print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"{name}: {r.params / 1e6:.1f}M params, val_loss {r.val_loss:.4f} (bpb {r.val_bpb:.3f}), "
              f"{r.tokens_per_s:,.0f} tokens/s, {time.perf_counter() - t0:.0f} s", flush=True)
    import pandas as pd

    frame = pd.concat([ResultsStore(m).load() for m in args.mad_results] + [ResultsStore(store).load()],
                      ignore_index=True)
    try:
        pts = proxy_points(frame, suite=args.suite)
    except ValueError as exc:
        print(f"no proxy plot: {exc}")
        return 0
    rho = spearman(pts["mad_score"], pts["val_loss"])
    print(pts.to_string(index=False))
    print(f"Spearman rho (MAD score vs val_loss), {len(pts)} specs: {rho:.3f}")
    save_figure(proxy_plot(frame, suite=args.suite), out / "proxy.png")
    (out / "proxy.json").write_text(json.dumps({"spearman": rho, "points": pts.to_dict("records"),
                                                "suite": args.suite, "steps": args.steps,
                                                "batch_size": args.batch_size, "seq_len": args.seq_len},
                                               indent=2, default=float))
    print(f"wrote {out / 'proxy.png'} and {out / 'proxy.json'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput", help="125M transformer: mad_bench vs plain PyTorch, eager and compiled")
    t.add_argument("--out", required=True)
    t.add_argument("--spec", default=str(SPEC_125M))
    t.add_argument("--vocab", type=int, default=50304, help="50304: GPT-2's, padded (125M); 256: bytes")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--seq-len", type=int, default=1024)
    t.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    t.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    t.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H200: 989)")
    x = sub.add_parser("proxy", help="the six reference specs at ~20M parameters on stdlib")
    x.add_argument("--out", required=True)
    x.add_argument("--specs", nargs="+", default=PROXY_SPECS, choices=PROXY_SPECS)
    x.add_argument("--corpus", default="stdlib")
    x.add_argument("--max-bytes", type=int, default=64 << 20)
    x.add_argument("--steps", type=int, default=600)
    x.add_argument("--batch-size", type=int, default=32)
    x.add_argument("--seq-len", type=int, default=512)
    x.add_argument("--lr", type=float, default=1e-3)
    x.add_argument("--val-windows", type=int, default=256)
    x.add_argument("--compile", action="store_true")
    x.add_argument("--mad-results", nargs="+", default=[str(ROOT / "results" / "reference-cpu")],
                   help="stores with the specs' MAD scores (merged; default: results/reference-cpu)")
    x.add_argument("--suite", default="mad-quick", help="the MAD suite of --mad-results to score on")
    sub.add_parser("check", help="CPU: the plain model equals mad_bench's with the same weights")
    args = p.parse_args(argv)
    return {"throughput": throughput, "proxy": proxy, "check": check}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
