"""Without CUDA, Triton kernels run in the CPU interpreter. ``TRITON_INTERPRET`` must be set
before triton is first imported, so it is set here, before any test module is collected."""
import os

import pytest
import torch
import yaml

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def two_lr_suite(tmp_path):
    """A suite of one tiny in-context-recall setting and a 2-point lr grid (one ensemble of two):
    seconds per run on a CPU, for the executor / engine tests."""
    path = tmp_path / "two-lr.yaml"
    path.write_text(yaml.safe_dump({
        "name": "two-lr", "training": {"epochs": 2, "batch_size": 16, "stop_at_accuracy": None},
        "grid": {"lr": [1.0e-3, 3.0e-3], "weight_decay": [0.0]},
        "tasks": {"in-context-recall": {"baseline": {"vocab_size": 8, "seq_len": 16,
                                                     "num_train_examples": 64, "num_test_examples": 32}}}}))
    return path
