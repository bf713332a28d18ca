"""Every shipped spec computes what it computed before the house's second cleanup moved its
configs and run layer: logits and gradient fingerprints at fixed seeds, pinned from the code
before that change (commit 4ae6f30; fp32 on the CPU, torch 2.13). A change that alters a
model on purpose raises MODEL_VERSION and re-pins these values, on purpose."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mad_bench.compiler import build_model
from mad_bench.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((Path(__file__).parent / "data" / "shipped_outputs.json").read_text())
SHIPPED = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("architectures/*.yaml"),
                                                    *ROOT.glob("architectures/zoology/*.yaml")])


def test_every_shipped_spec_is_pinned():
    assert sorted(PINNED) == SHIPPED


@pytest.mark.parametrize("rel", SHIPPED)
def test_outputs_and_gradients_unchanged(rel):
    torch.manual_seed(0)
    model = build_model(load_spec(ROOT / rel), 16, 32)
    x = torch.randint(0, 16, (2, 32), generator=torch.Generator().manual_seed(1))
    y = model(x).float()
    y.pow(2).mean().backward()
    norms = [p.grad.double().norm().item() for p in model.parameters() if p.grad is not None]
    got = {"sum": y.double().sum().item(), "abs": y.double().abs().sum().item(),
           "grad_norm": sum(v * v for v in norms) ** 0.5, "n_grads": len(norms)}
    want = PINNED[rel]
    assert got["n_grads"] == want["n_grads"]
    for key in ("sum", "abs", "grad_norm"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
