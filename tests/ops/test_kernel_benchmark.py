"""benchmarks/kernels.py: the CPU smoke run writes rows with the floor, timings and errors; the
autotuning bound caps, spreads and pins configs."""
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    if "kernels_bench" not in sys.modules:  # dataclasses need the module registered
        spec = importlib.util.spec_from_file_location("kernels_bench", ROOT / "benchmarks" / "kernels.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["kernels_bench"]


def test_autotune_bound_caps_spreads_and_pins():
    kb = _load()
    configs = [f"cfg{i}" for i in range(10)]
    bound = kb.AutotuneBound(3, {"k|1|bf16": "cfg7"})
    assert bound.select(configs, "other") == ["cfg0", "cfg4", "cfg9"]  # evenly spaced, ends kept
    assert bound.select(configs, "k|1|bf16") == ["cfg7"] and bound.pinned_hits == 1
    assert bound.select(configs[:2], None) == ["cfg0", "cfg1"]  # fewer than the cap: all
    assert kb.AutotuneBound(0).select(configs, None) == configs  # 0: no cap
    assert kb.AutotuneBound(1).select(configs, None) == ["cfg5"]


def test_hbm_floor_counts_inputs_outputs_and_grads():
    import torch

    kb = _load()
    x, w = torch.zeros(4, 8, dtype=torch.bfloat16), torch.zeros(8)  # 64 + 32 bytes
    y = torch.zeros(4, 8, dtype=torch.bfloat16)  # 64 bytes
    # fwd: 96 in + 64 out; bwd: 96 in + 64 dy + 64 dx (w gets no gradient)
    assert kb.hbm_floor_bytes([x, w], [y], [0]) == 2 * 96 + 2 * 64 + 64


def test_cpu_smoke_run(device, tmp_path):
    kb = _load()
    out = tmp_path / "k.json"
    kb.main(kb._parse(["--device", "cpu", "--shapes", "tiny", "--ops", "short_conv_silu", "--out", str(out)]))
    rows = json.loads(out.read_text())["rows"]
    assert [r["op"] for r in rows] == ["short_conv_silu"]
    r = rows[0]
    assert r["floor_ms"] > 0 and r["ms_triton"] > 0 and r["ms_torch"] > 0 and r["setup_s_triton"] > 0
    assert r["err_triton"] < 1e-5 and "vs_best" in r and r["x_floor"] > 0
    assert out.with_suffix(".csv").read_text().startswith("op,")


def test_autotune_bound_inside_triton_autotuner(device):
    # a real triton.autotune kernel (interpreter): 6 configs, capped to 2 benchmarked; then a
    # pinned key benchmarks nothing and runs its pin
    import torch
    import triton
    import triton.language as tl

    kb = _load()

    @triton.autotune(configs=[triton.Config({"BS": b}) for b in (1, 2, 4, 8, 16, 32)], key=["n"])
    @triton.jit
    def _copy(x, y, n, BS: tl.constexpr):
        i = tl.program_id(0) * BS + tl.arange(0, BS)
        tl.store(y + i, tl.load(x + i, mask=i < n), mask=i < n)

    benched = []
    _copy._bench = lambda *a, config, **k: benched.append(config.kwargs["BS"]) or [float(config.kwargs["BS"])] * 3
    bound = kb.AutotuneBound(2)
    undo = bound.install()
    try:
        x, y = torch.arange(5.0), torch.zeros(5)
        _copy[lambda m: (triton.cdiv(5, m["BS"]),)](x, y, 5)
        assert benched == [1, 32] and torch.equal(x, y)
        (key, cfg), = bound.chosen.items()
        assert "_copy|5|" in key and "BS: 1" in cfg
        pinned = kb.AutotuneBound(2, {key.replace("|5|", "|7|"): cfg.replace("BS: 1", "BS: 4")})
        undo()
        undo = pinned.install()
        benched.clear()
        x, y = torch.arange(7.0), torch.zeros(7)
        _copy[lambda m: (triton.cdiv(7, m["BS"]),)](x, y, 7)
        assert benched == [] and pinned.pinned_hits == 1 and "BS: 4" in pinned.chosen[key.replace("|5|", "|7|")]
        assert torch.equal(x, y)
    finally:
        undo()
