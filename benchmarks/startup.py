"""Start-up time of ``madbench`` commands, as a ratio to ``python -c pass`` (same machine, one run).

    python benchmarks/startup.py [--repeats 5]

Each row: the median wall time of the command in a fresh interpreter, its ratio to a bare
interpreter, and whether torch got imported. Commands that only read files or print help
should not pay for importing torch and the primitives.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "results/reference-cpu"
COMMANDS = [
    ["--help"],
    ["run", "--help"],
    ["validate", "architectures/transformer.yaml"],
    ["schema"],
    ["results", "--results", REFERENCE],
    ["leaderboard", "--results", REFERENCE, "--suite", "mad-quick"],
]
PROBE = ("import runpy, sys, atexit; sys.argv = ['madbench'] + sys.argv[1:]; "
         "atexit.register(lambda: sys.stderr.write('TORCH=%d\\n' % ('torch' in sys.modules))); "
         "runpy.run_module('mad_bench.cli', run_name='__main__')")


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = statistics.median(timed([sys.executable, "-c", "pass"], env)[0] for _ in range(args.repeats))
    print(f"python -c pass: {base * 1000:.0f} ms (median of {args.repeats})\n")
    print(f"| command | median ms | x python -c pass | imports torch |")
    print("|---|---:|---:|---|")
    for cmd in COMMANDS:
        runs = [timed([sys.executable, "-c", PROBE, *cmd], env) for _ in range(args.repeats)]
        ms = statistics.median(r[0] for r in runs)
        torch = "yes" if "TORCH=1" in runs[-1][1] else "no"
        print(f"| madbench {' '.join(cmd)} | {ms * 1000:.0f} | {ms / base:.1f} | {torch} |")


if __name__ == "__main__":
    main()
