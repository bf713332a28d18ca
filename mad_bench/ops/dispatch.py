"""Dispatch helpers shared by every op family in ``mad_bench.ops``.

* :func:`use_triton` is an op's one dispatch decision (``impl`` plus the op's own ``auto`` rule);
  :func:`resolve_impl` turns a spec's ``impl: auto|triton|torch`` into the path actually run.
* :func:`jit` is ``triton.jit`` that degrades to the identity when triton is missing.
* :func:`pick` returns one launch config under the interpreter (multi-config autotuning needs a
  GPU driver) and the heuristic GPU config otherwise.

Triton is optional: without it every module still imports and the torch references run.
"""
from __future__ import annotations

import os
from typing import Literal

import torch

try:  # pragma: no cover - depends on the platform
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # ImportError, or a broken install
    triton = None
    HAS_TRITON = False

    class _TLStub:  # lets ``x: tl.constexpr`` annotations evaluate without triton
        constexpr = None

    tl = _TLStub()  # type: ignore[assignment]

IMPLS = ("auto", "triton", "torch")
Impl = Literal["auto", "triton", "torch"]


def triton_available() -> bool:
    """True when ``triton`` imported (it may still have no GPU to run on). Decided once, at import:
    layers dispatch inside the compiled step, where dynamo refuses ``importlib``'s lookups (torch
    2.11 broke deltanet's graph on ``find_spec``)."""
    return HAS_TRITON


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _force_triton() -> bool:
    return os.environ.get("MAD_BENCH_FORCE_TRITON", "0") == "1"


def resolve_impl(impl: str, x: torch.Tensor) -> Literal["triton", "torch"]:
    """Choose the implementation for input ``x``.

    ``auto``: Triton when ``x`` is on CUDA (and triton imports), or on CPU when both
    ``MAD_BENCH_FORCE_TRITON=1`` and ``TRITON_INTERPRET=1``; the torch reference otherwise.
    ``torch``: always the reference.  ``triton``: Triton, or a ``ValueError`` when it cannot run
    (CPU tensor without ``TRITON_INTERPRET=1``, or triton not installed).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "torch":
        return "torch"
    if impl == "auto":
        if not triton_available():
            return "torch"
        if x.is_cuda:
            return "triton"
        if x.device.type == "cpu" and interpreting() and _force_triton() and interpreter_active():
            return "triton"
        return "torch"
    # impl == "triton"
    if not triton_available():
        raise ValueError("impl='triton' requested but triton is not installed")
    if x.is_cuda:
        return "triton"
    if x.device.type == "cpu" and interpreting():
        if not interpreter_active():
            raise ValueError(
                "impl='triton' on CPU: TRITON_INTERPRET=1 is set but triton was imported before it was; "
                "set the variable before anything imports triton"
            )
        return "triton"
    raise ValueError(
        f"impl='triton' needs a CUDA tensor (got device {x.device}); on CPU set "
        "TRITON_INTERPRET=1 to run the Triton interpreter, or use impl='torch'/'auto'"
    )


def use_triton(impl: str, x: torch.Tensor, auto: bool = True) -> bool:
    """An op's one dispatch decision: True to run its Triton kernel on input ``x``.

    ``auto`` is the op's measured rule for ``impl='auto'`` at this input (False where its
    Triton kernel loses to the torch reference). The kernels compute in fp32, so fp64 inputs
    (references, precise checks) stay on torch under ``auto``. ``impl='triton'`` always runs
    the kernel (or raises where it cannot run, see :func:`resolve_impl`).
    """
    check_impl(impl)
    if impl == "auto" and (not auto or x.dtype == torch.float64):
        return False
    return resolve_impl(impl, x) == "triton"


def jit(fn):
    """``triton.jit`` (identity when triton is missing, so modules still import).

    Interpreter or compiled is fixed when ``triton`` is first imported (its ``tl.*`` helpers are
    decorated then): ``TRITON_INTERPRET=1`` must be set before anything imports triton.
    """
    if not HAS_TRITON:
        return fn
    return triton.jit(fn)


def interpreter_active() -> bool:
    """True when triton was imported in interpreter mode (so CPU tensors can run kernels)."""
    if not HAS_TRITON:
        return False
    return type(tl.sum).__name__ == "InterpretedFunction"


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def pick(gpu: dict, interp: dict | None = None) -> dict:
    """Launch meta-parameters: ``gpu`` normally, ``interp`` (default ``gpu``) when interpreting.

    Under the interpreter ``num_warps``/``num_stages`` are dropped (they mean nothing there)."""
    if interpreting():
        cfg = dict(gpu if interp is None else interp)
        cfg.pop("num_warps", None)
        cfg.pop("num_stages", None)
        return cfg
    return dict(gpu)


def state_block_config(dk: int, dv: int, interp_bv: int = 32) -> dict:
    """Launch config of the recurrent kernels that keep a [K, V-block] state in registers (delta
    rule, gated delta rule, RWKV-6): the whole key width, a value block of at most 64 with
    at most 16 state elements per thread (ptxas: no spills); under the interpreter, wider
    value blocks (``interp_bv``) and so fewer programs."""
    BK = next_pow2(dk)
    BV = min(next_pow2(dv), max(16, 4096 // BK), 64)
    nw = min(8, max(1, BK * BV // 512))
    return pick(dict(BK=BK, BV=BV, num_warps=nw), dict(BK=BK, BV=min(next_pow2(dv), interp_bv)))


_SM_COUNT: dict[int, int] = {}


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (a small number on CPU / interpreter)."""
    if device.type != "cuda":
        return 2
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
