"""The ensemble engine on CUDA under bf16 autocast (skipped without a GPU): what the CPU suite
cannot see. The vmapped path of every shipped spec must equal the per-member loop (or fall back
to it with a reason), and a short grid must equal the plain trainer run by run."""
from pathlib import Path

import pytest
import torch

from mad_bench import load_spec
from mad_bench.train.ensemble import EngineInfo, EngineOptions, build_ensemble, train_grid
from mad_bench.suite import expand, load_suite
from mad_bench.train.trainer import train
from reference_trainer import members

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p.stem for p in (ROOT / "architectures").glob("*.yaml"))
NO_VMAP = {"lstm", "gru"}  # cuDNN RNNs have no batching rule: the engine loops over members
GRID = [(1e-4, 0.0), (5e-4, 0.1), (1e-3, 0.0)]


def _setting(task="in-context-recall"):
    s = expand(load_suite("mad"), [task], baseline_only=True)[0]
    ts = s.task_setting.model_copy(update={"num_train_examples": 1024, "num_test_examples": 256})
    return ts, s.training.model_copy(update={"epochs": 3})


@pytest.mark.parametrize("arch", SPECS)
def test_vmapped_bf16_path_equals_member_loop(arch):
    spec = load_spec(str(ROOT / "architectures" / f"{arch}.yaml"))
    task = "compression" if spec.backbone == "autoencoder" else "in-context-recall"
    ts, cfg = _setting(task)
    cfgs = [cfg.model_copy(update={"lr": lr, "weight_decay": wd}) for lr, wd in GRID]
    info = EngineInfo()
    ens = build_ensemble(spec, ts, cfgs, torch.device("cuda"), info=info,
                         options=EngineOptions(capture=False))
    if arch in NO_VMAP:
        assert ens.mode == "loop" and info.fallback_reason
        return
    assert ens.mode == "vmap", info.fallback_reason
    check = ens.compare_modes(ens.x_train[:16], ens.y_train[:16])
    assert check.ok, check.describe()


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
def test_engine_equals_plain_trainer_on_cuda(arch):
    spec = load_spec(str(ROOT / "architectures" / f"{arch}.yaml"))
    ts, cfg = _setting()
    results = train_grid(spec, ts, members(cfg, GRID), device="cuda")
    for (lr, wd), r in zip(GRID, results):
        ref = train(spec, ts, cfg.model_copy(update={"lr": lr, "weight_decay": wd}), device="cuda")
        assert r.status == ref.status == "ok"
        assert abs(r.test_acc - ref.test_acc) <= 0.01, (lr, wd, r.test_acc, ref.test_acc)
