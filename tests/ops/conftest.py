"""Kernel tests: on a machine without CUDA they run the Triton CPU interpreter, which
tests/conftest.py switches on (``TRITON_INTERPRET=1``) before triton is first imported.

The ``device`` fixture skips the Triton tests with a message where triton is missing, or where it
was imported in compiled mode before the interpreter was switched on (something imported it
ahead of the conftest).
"""
import os

import pytest
import torch

from mad_bench.ops.dispatch import interpreter_active, triton_available

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1" else "cpu"


@pytest.fixture
def device():
    if not triton_available():
        pytest.skip("triton not installed")
    if DEVICE == "cpu" and not interpreter_active():
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set; run `pytest tests/ops` alone")
    return DEVICE
