"""Kernel tests: on a machine without CUDA they run the Triton CPU interpreter.

``TRITON_INTERPRET=1`` must be set before triton is first imported, so it is set here at
import time (pytest imports this conftest before the test modules of this folder).  If triton
was already imported in compiled mode by an earlier test module, the Triton tests skip with a
message; run ``pytest tests/ops`` on its own then.
"""
import os
import sys

import torch

_ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"
if not _ON_GPU and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from mad_bench.ops.dispatch import interpreter_active, triton_available  # noqa: E402

DEVICE = "cuda" if _ON_GPU else "cpu"


@pytest.fixture
def device():
    if not triton_available():
        pytest.skip("triton not installed")
    if DEVICE == "cpu" and not interpreter_active():
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set; run `pytest tests/ops` alone")
    return DEVICE


