"""Compile the selective-scan kernels for an H100 / H200 (sm_90) on a machine without a GPU and
print, per launch config of ``scan_check.SWEEP``: registers, spilled bytes, PTX instructions,
warp shuffles and barriers of the forward and backward kernel. A CPU check that every config
compiles, and a first look at what a kernel costs before any GPU minutes are spent (static
counts: a loop body is counted once).

    python benchmarks/scan_sm90.py [--variant lane]

Signature as in the Mamba layer's call (``scan_check``): bf16 activations passed as time-major
views (channel stride 1), B / C ``[b, l, n]`` transposed (state stride 1), dt bias + softplus, D
and the silu(z) gate on.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile for real: the interpreter has no compiler
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from scan_check import SWEEP  # noqa: E402
from mad_bench.ops.selective_scan import triton as ss  # noqa: E402

ARCH = 90
BF16 = {"U", "DELTA", "BM", "CM", "Z", "OUT", "DOUT", "DU", "DDELTA", "DZ"}  # the rest are fp32
INTS = {"L", "DIM", "N", "NC", "RPM"}
UNIT_STRIDES = {"s_ud", "s_dd", "s_zd", "s_od", "s_gd", "s_dud", "s_ddd", "s_dzd", "s_bn", "s_cn"}
FLAGS = dict(HAS_D=True, HAS_Z=True, HAS_DB=True, SOFTPLUS=True)


def compile_one(kernel, consts: dict, num_warps: int) -> dict:
    params = list(inspect.signature(kernel.fn).parameters)
    consts = {**{k: 1 for k in UNIT_STRIDES if k in params}, **consts}
    sig = {}
    for p in params:
        if p in consts:
            sig[p] = "constexpr"
        elif p in INTS or p.startswith("s_"):
            sig[p] = "i32"
        else:
            sig[p] = "*bf16" if p in BF16 else "*fp32"
    src = ASTSource(fn=kernel, signature=sig, constexprs={(params.index(k),): v for k, v in consts.items()})
    k = triton.compile(src, target=GPUTarget("cuda", ARCH, 32), options=dict(num_warps=num_warps))
    ptx = k.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        log = subprocess.run([get_ptxas(ARCH).path, "-v", f"-arch=sm_{ARCH}a", str(path), "-o", os.devnull],
                             capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores", log)
    return dict(regs=int(regs.group(1)), spill=int(spill.group(1)) if spill else 0,
                instr=sum(1 for line in ptx.splitlines() if line.rstrip().endswith(";")),
                shfl=ptx.count("shfl.sync"), bar=ptx.count("bar.sync"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default=None, choices=sorted(ss.VARIANTS),
                   help="only the configs whose backward is this variant")
    a = p.parse_args(argv)
    default = ss._cfg(256, 4)
    configs = [{}] + [c for c in SWEEP if a.variant in (None, c.get("variant_bwd", "tile"))]
    for over in configs:
        cfg = {**default, **over}
        row = []
        for side, bwd in (("fwd", False), ("bwd", True)):
            kernel, launch = ss._launch(cfg, bwd)
            launch = dict(launch)
            nw = launch.pop("num_warps")
            consts = {**FLAGS, **launch, **({} if bwd else dict(STORE_CKPT=True))}
            r = compile_one(kernel, consts, nw)
            row.append(f"{side} {cfg[f'variant_{side}']:4s} regs {r['regs']:3d} spill {r['spill']:4d} "
                       f"instr {r['instr']:5d} shfl {r['shfl']:4d} bar {r['bar']:3d}")
        print(f"{str(over or 'default'):70.70s}  " + "  |  ".join(row), flush=True)


if __name__ == "__main__":
    main()
