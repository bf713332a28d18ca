"""benchmarks/kernels.py: the CPU smoke run writes rows with the floor, timings and errors; the
warm-up's workers make the first calls and their failures land in the rows; the autotuning bound
caps, spreads and pins configs."""
import importlib
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    # imported by its package name: the warm-up's spawned workers import it again by that name
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.kernels")


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


def test_cpu_warm_up_workers(device, tmp_path):
    # two spawned workers make the first calls; the timed loop records their seconds. --err-batch 1
    # (B is 2): the check runs at the row's shape with output gradients zero outside the first row,
    # so the conv's weight and bias gradients (summed over the batch) must still match the slice's
    kb = _load()
    out = tmp_path / "k.json"
    kb.main(kb._parse(["--device", "cpu", "--shapes", "tiny", "--ops", "short_conv_silu,chunk_linear_attn",
                       "--warm-workers", "2", "--err-batch", "1", "--cache-dir", str(tmp_path / "cache"),
                       "--out", str(out)]))
    res = json.loads(out.read_text())
    warm = res["meta"]["warm"]
    assert res["meta"]["warm_s"] > 0 and warm["started"] == 2
    assert warm["died"] == warm["cut"] == warm["not_run"] == 0 and warm["replaced"] == 0
    rows = {r["op"]: r for r in res["rows"]}
    assert sorted(rows) == ["chunk_linear_attn", "short_conv_silu"]
    for r in rows.values():
        assert r["warm_s_triton"] > 0 and "error_triton" not in r and r["ms_triton"] > 0
        assert r["err_triton"] < 1e-5 and r["err_torch"] < 1e-5 and "error_check" not in r
    la = rows["chunk_linear_attn"]
    if importlib.util.find_spec("fla") is None:  # the worker's exception is the row's error; not run again
        assert la["error_fla"].startswith("warm-up: RuntimeError") and la["ms_fla"] is None
        assert "setup_s_fla" not in la and warm["error"] == 1
    else:
        assert la["warm_s_fla"] > 0 and la["ms_fla"] > 0


def _fake_worker(conn, cfg):
    """A warm-up worker whose item's op says what happens: ok, raise, die, hang."""
    import os
    import time

    conn.send(dict(ready=os.getpid()))
    while (item := conn.recv()) is not None:
        if item["op"] == "die":
            os._exit(3)
        if item["op"] == "hang":
            time.sleep(60)
        err = "RuntimeError: boom" if item["op"] == "raise" else None
        conn.send(dict(key=item["key"], error=err, oom=False, broken=False, warm_s=0.01, chosen={"k": item["op"]}))


def test_warm_up_records_errors_deaths_and_cuts(tmp_path):
    # a raising item, a worker that dies (replaced), one that hangs past the limit (cut) and an
    # item that waits on it (never started): every item gets a status, the pool keeps going
    kb = _load()

    def item(op, after=None):
        return dict(key=(op, "tiny", 37, "triton"), op=op, impl="triton", mem=1, after=after)

    items = [item("ok"), item("raise"), item("die"), item("hang"), item("ok2"), item("after_hang", item("hang")["key"])]
    chosen = {}
    res, stats = kb.warm_up(items, 2, {}, limit=8.0, mem_budget=float("inf"), on_chosen=chosen.update,
                            log=lambda *a, **k: None, target=_fake_worker)
    status = {k[0]: r["status"] for k, r in res.items()}
    assert status == {"ok": "ok", "raise": "error", "die": "died", "hang": "cut", "ok2": "ok", "after_hang": "not run"}
    assert res[("raise", "tiny", 37, "triton")]["error"] == "RuntimeError: boom"
    assert "exit code 3" in res[("die", "tiny", 37, "triton")]["error"]
    assert stats["replaced"] == 1 and stats["died"] == 1 and stats["cut"] == 1 and stats["not_run"] == 1
    assert chosen["k"] in {"ok", "raise", "ok2"} and 8.0 <= stats["wall_s"] < 25


def test_stable_pickle_lookup_makes_inductor_keys_process_independent():
    # a module that holds torch and comes before torch in sys.modules (a spawned worker's
    # __mp_main__) is where pickle finds torch.contiguous_format, part of inductor's cache keys;
    # after the fix pickle names a torch module, as in the main process
    import subprocess

    code = """
import pickle, pickletools, sys, types
early = types.ModuleType("early_main")
sys.modules["early_main"] = early
import torch
early.torch = torch
owner = lambda: next(a for _, a, _ in pickletools.genops(pickle.dumps(torch.contiguous_format, protocol=4))
                     if isinstance(a, str))
before = owner()
sys.path.insert(0, sys.argv[1])
import benchmarks.kernels as kb
kb._stable_pickle_lookup()
print(before, owner())
"""
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.split()[-2:]
    assert before == "early_main" and after.split(".")[0] == "torch"


def test_check_slices_batch_and_keeps_shared_gradients(device):
    # B 3, one checked row: a per-row output and a weight whose gradient sums over the batch. Right
    # only if the other rows' output gradients are zero (else w.grad holds 3 rows, the fp64 slice 1)
    import torch

    kb = _load()
    op = kb.OpBench("scale", lambda B, L, D, dt, dev: [torch.randn(B, L, D), torch.randn(D)], (0, 1),
                    triton=lambda x, w: x * w, torch=lambda x, w: x * w)
    row = dict(B=3, L=5, ms_triton=1.0, ms_wrong=1.0)
    # same forward, w's gradient 1.1x: only the shared gradient tells them apart
    impls = {"triton": op.triton, "wrong": lambda x, w: x * (w + (w - w.detach()) * 0.1)}
    kb.check_row(op, op.make(3, 5, 4, None, None), impls, row, 1)
    assert row["err_triton"] < 1e-6
    assert 0.05 < row["err_wrong"] < 0.2


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
