"""benchmarks/compile_check.py: the engine's step compiles as one graph (fullgraph) for a shipped
spec, and a graph break in a layer is reported as one, with a failing exit status."""
import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compile_check", ROOT / "benchmarks" / "compile_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_spec_compiles_as_one_graph_and_a_graph_break_is_caught(tmp_path, monkeypatch):
    cc = _script()
    out = tmp_path / "cc.json"
    assert cc.main(["--device", "cpu", "--archs", "short-conv", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["ok"] is True and row["grad_err"] <= 1e-4

    from mad_bench.primitives.sequence.short_conv import ShortConv
    forward = ShortConv.forward

    def breaking(self, x):
        torch._dynamo.graph_break()
        return forward(self, x)

    monkeypatch.setattr(ShortConv, "forward", breaking)
    assert cc.main(["--device", "cpu", "--archs", "short-conv", "--out", str(out)]) == 1
    row = json.loads(out.read_text())["rows"][0]
    assert row["ok"] is False and "graph break" in row["reason"].lower(), row["reason"]
