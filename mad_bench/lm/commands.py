"""CLI subcommands ``lm`` and ``generate``; ``register(subparsers)`` adds them.

Nothing here imports torch at module level: ``madbench --help`` builds these parsers."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..argtypes import positive_int

PRECISIONS = ("auto", "fp32", "bf16")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _size(text: str) -> int:
    """A byte count: 1000000, 64M, 512K, 1G (binary units)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 2000000, 512K, 64M, 1G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 byte, got {text!r}")
    return value


def config_from_args(args: argparse.Namespace):
    from .train import LMConfig

    return LMConfig(corpus=args.corpus, max_bytes=args.max_bytes, val_fraction=args.val_fraction,
                    seq_len=args.seq_len, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                    min_lr=args.min_lr, warmup_steps=args.warmup_steps,
                    weight_decay=args.wd, grad_clip=args.grad_clip or None, precision=args.precision,
                    seed=args.seed, eval_every=args.eval_every, val_windows=args.val_windows,
                    device=args.device, compile=args.compile, fsdp=args.fsdp)


def cmd_lm(args: argparse.Namespace) -> int:
    import os

    from ..results.store import ResultsStore
    from ..spec import load_spec
    from .data import check_lengths, load_corpus
    from .train import run_key_of, run_lm

    spec = load_spec(args.spec)
    cfg = config_from_args(args)
    if args.fsdp and args.nproc < 2:
        raise ValueError("--fsdp shards the model over processes: give --nproc 2 or more")
    if cfg.batch_size % args.nproc:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of --nproc {args.nproc}")
    say = print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)  # torchrun: rank 0 speaks
    corpus = load_corpus(cfg.corpus, cfg.max_bytes, cfg.val_fraction)
    check_lengths(corpus, cfg.seq_len)
    say(f"corpus {corpus.describe()}")
    store = ResultsStore(args.results)
    store.ensure_writable()
    key = run_key_of(spec, cfg, corpus)
    if store.has_result(key) and not (args.force or args.resume):
        row = store.read(key)
        say(f"already in {store.root}: {spec.name} on {corpus.name} val_loss={row['test_loss']:.4f} "
              f"bpb={row['val_bpb']:.4f} (use --force to re-run)")
        return 0
    ckpt = args.checkpoint_dir or str(Path("checkpoints") / f"lm-{spec.name}-{corpus.name}")
    kwargs = dict(checkpoint_dir=ckpt, resume=args.resume, stop_after=args.stop_after,
                  results=args.results, progress=not args.no_progress)
    if args.nproc > 1:
        result = run_lm(spec, cfg, nproc=args.nproc, **kwargs)
    else:
        result = run_lm(spec, cfg, corpus=corpus, **kwargs)
    say(f"{spec.name} on {corpus.name}: {result.status} step {result.step}/{cfg.steps} "
          f"val_loss={result.val_loss:.4f} bpb={result.val_bpb:.4f} train_loss={result.train_loss:.4f} "
          f"tokens/s={result.tokens_per_s:,.0f} params={result.params:,} wall_s={result.wall_s:.1f}")
    say(f"checkpoint {Path(ckpt) / 'last.pt'}"
          + (f"; row in {store.root}" if result.step == cfg.steps or result.status != "ok"
             else f"; continue with --resume (row stored when all {cfg.steps} steps have run)"))
    return 0 if result.status == "ok" else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from ..train.core import resolve_device
    from .generate import generate, load_for_generation

    device = resolve_device(args.device)
    model = load_for_generation(args.spec, args.checkpoint, device=str(device))
    text = generate(model, args.prompt.encode("utf-8"), max_new_tokens=args.max_new_tokens,
                    temperature=args.temperature, top_k=args.top_k or None, seed=args.seed)
    sys.stdout.write(text.decode("utf-8", errors="replace") + "\n")
    return 0


def register(subparsers) -> None:
    """Add ``lm`` and ``generate`` to the ``madbench`` subparsers."""
    p = subparsers.add_parser(
        "lm", help="train a spec as a byte-level language model on real text",
        description="Train a spec as a causal byte-level LM (vocab 256) on local text: the Python "
        "standard library's sources (default), a text file or a folder. Reports validation loss, "
        "bits per byte and tokens/s; stores a row (kind lm, task lm:<corpus>) in the results store "
        "and a checkpoint at every evaluation.")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML / JSON)")
    p.add_argument("--corpus", default="stdlib",
                   help="stdlib (default: this Python's standard library .py files), a text file or a folder")
    p.add_argument("--max-bytes", type=_size, default=64 << 20,
                   help="read at most this much of the corpus (e.g. 2M; default: 64M)")
    p.add_argument("--val-fraction", type=_fraction, default=0.05,
                   help="share of files (by a hash of their path) held out for validation (default: 0.05)")
    p.add_argument("--seq-len", type=positive_int, default=256, help="training window in bytes (default: 256)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="global batch (windows per step, split over --nproc; default: 32)")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps (default: 1000)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--min-lr", type=float, default=1e-4, help="end of the cosine schedule (default: 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=50, help="linear warmup steps (default: 50)")
    p.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay (default: 0.1)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 = off (default: 1.0)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default: bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16")
    p.add_argument("--seed", type=int, default=0, help="model init and batch order (default: 0)")
    p.add_argument("--eval-every", type=positive_int, default=100,
                   help="validate and checkpoint every N steps, and at the end (default: 100)")
    p.add_argument("--val-windows", type=positive_int, default=64,
                   help="fixed validation windows of --seq-len bytes (default: 64)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="processes on this host, data parallel (DDP: one per GPU, or gloo on the CPU; default: 1)")
    p.add_argument("--fsdp", action="store_true", help="shard the model with FSDP instead of DDP (needs --nproc >= 2)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where last.pt goes (default: checkpoints/lm-<spec>-<corpus>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    p.add_argument("--stop-after", type=positive_int, default=None,
                   help="leave after N steps of this invocation (schedule unchanged; --resume goes on)")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--force", action="store_true", help="re-run a run already in the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_lm)

    p = subparsers.add_parser(
        "generate", help="sample text from an lm checkpoint, token by token",
        description="Sample bytes from a spec trained by `madbench lm`: the prompt and every new "
        "byte go through the model's recurrent step() path.")
    p.add_argument("spec", metavar="SPEC", help="the spec file the checkpoint was trained from")
    p.add_argument("--checkpoint", required=True, help="last.pt (or its folder) written by madbench lm")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=positive_int, default=200, help="bytes to sample (default: 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k most likely, 0 = all (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    p.set_defaults(func=cmd_generate)
