"""A tiny MQAR run on the CPU (seconds to minutes): one spec at several widths and learning rates,
with the suites' optimiser settings (AdamW betas 0.9/0.999, wd 0.1, cosine to 0, no clipping,
stop at 0.99, last epoch), printing the test accuracy after every epoch as one JSON line per run.

    python benchmarks/mqar_tiny_cpu.py architectures/zoology/gated-deltanet.yaml --d 64 128 --lr 5e-4 2e-3 1e-2

Issue 21 used it to tell a broken layer from a learning-rate / step-budget effect.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mad_bench.configs.tasks import MQARSetting  # noqa: E402
from mad_bench.configs.train import TrainConfig  # noqa: E402
from mad_bench.spec import load_spec  # noqa: E402
from mad_bench.train.trainer import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("--d", type=int, nargs="+", default=[64, 128], help="widths (d_model)")
    ap.add_argument("--lr", type=float, nargs="+", default=[2e-3])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--kv", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--examples", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_spec(args.spec).model_dump(mode="json")
    setting = MQARSetting(vocab_size=args.vocab, seq_len=args.seq_len, num_kv_pairs=args.kv,
                          num_train_examples=args.examples, num_test_examples=500,
                          random_non_queries=False)
    for lr in args.lr:
        for d in args.d:
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, weight_decay=0.1,
                              betas=(0.9, 0.999), min_lr=0.0, grad_clip=None, stop_at_accuracy=0.99,
                              eval_select="last")
            t0 = time.perf_counter()
            r = train(load_spec({**base, "d_model": d}), setting, cfg, device="cpu")
            print(json.dumps({"spec": base["name"], "d_model": d, "lr": lr, "test_acc": round(r.test_acc, 3),
                              "per_epoch": [round(h["test_acc"], 3) for h in r.history],
                              "wall_s": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
