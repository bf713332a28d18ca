"""The ensemble engine computes what the reference trainer (tests/reference_trainer.py:
torch.optim.AdamW, clip_grad_norm_, a loop over batches) computes, member by member; the plain
trainer is its one-member case."""
import math
from pathlib import Path

import pytest
import torch

from mad_bench import load_spec
from mad_bench.configs.tasks import get_task
from mad_bench.configs.train import TrainConfig
from mad_bench.train.ensemble import build_ensemble
from mad_bench.train.member_metrics import batched_counts
from mad_bench.results import ResultsStore
from mad_bench.run.driver import run_plan
from mad_bench.run.engines import EnsembleEngine
from mad_bench.run.options import ExecOptions
from mad_bench.run.plan import plan, requests_of
from mad_bench.train.ensemble import EngineInfo, EngineOptions, build_ensemble, train_grid
from mad_bench.train.member_metrics import batched_counts
from mad_bench.suite import expand, load_suite
from mad_bench.tasks import generate
from mad_bench.tasks.metrics import accuracy_counts
from mad_bench.train.trainer import cosine_lr, train
from reference_trainer import members, reference_train

RECALL = get_task("in-context-recall")(vocab_size=8, seq_len=16, num_train_examples=128,
                                       num_test_examples=64)
ATTENTION = load_spec({"name": "att", "d_model": 32, "repeat": 2,
                       "layers": [{"type": "attention", "n_heads": 4, "rotary_dim": 0}, "swiglu"]})
LSTM = load_spec({"name": "lstm", "d_model": 16, "repeat": 1, "layers": ["lstm", "swiglu"]})
CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, weight_decay=0.0, stop_at_accuracy=None)
GRID = [(1e-3, 0.0), (1e-2, 0.1), (3e-3, 0.0)]
FIELDS = ("test_acc", "test_acc_macro", "test_loss", "train_acc", "train_loss")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: threads only contend on a shared CI machine. Each test probes afresh."""
    from mad_bench.train import ensemble as ens_mod
    ens_mod._PROBED.clear()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def plain(spec, cfg, lr, wd, setting=RECALL):
    """The reference run of one grid point (the oracle, not the engine)."""
    return reference_train(spec, setting, cfg.model_copy(update={"lr": lr, "weight_decay": wd}))


def assert_same(engine, reference, tol=1e-4):
    a, b = engine.to_dict(), reference.to_dict()
    for k in ("status", "stop_reason", "epochs_run", "best_epoch", "params"):
        assert a[k] == b[k], (k, a[k], b[k])
    for k in FIELDS:
        assert a[k] == pytest.approx(b[k], abs=tol, nan_ok=True), (k, a[k], b[k])
    assert len(engine.history) == len(reference.history)


def test_batched_counts_equal_accuracy_counts():
    g = torch.Generator().manual_seed(0)
    preds = torch.randint(-1, 7, (3, 50), generator=g)
    targets = torch.randint(0, 6, (50,), generator=g)
    targets[::4] = -100
    offsets = torch.arange(3)[:, None] * 7
    tp, sup, pred = batched_counts(preds, targets, 6, offsets)
    for i in range(3):
        ref = accuracy_counts(preds[i], targets, 6)
        assert torch.equal(tp[i], ref.tp) and torch.equal(sup[i], ref.support)
        assert torch.equal(pred[i], ref.predicted)


def test_one_member_follows_torch_adamw_and_clipping_step_by_step():
    """Parameters after each step: ensemble member g == torch.optim.AdamW + clip_grad_norm_."""
    cfgs = [CFG.model_copy(update={"lr": lr, "weight_decay": wd, "grad_clip": 0.05}) for lr, wd in GRID]
    with torch.random.fork_rng():
        ens = build_ensemble(ATTENTION, RECALL, cfgs, torch.device("cpu"))
    assert ens.mode == "vmap"
    data = generate(RECALL, "train", CFG.seed)
    order = torch.randperm(128, generator=torch.Generator().manual_seed(CFG.seed + 1))
    ens.order.copy_(order)
    models, opts = [], []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        from mad_bench.compiler import build_model
        m = build_model(ATTENTION, vocab_size=8, max_len=16)
        models.append(m)
        opts.append(torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas))
    total = ens.total_steps
    for step in range(4):
        ens._train_step()
        idx = order[step * 32:(step + 1) * 32]
        x, y = data.inputs[idx], data.targets[idx]
        for g, (m, opt, cfg) in enumerate(zip(models, opts, cfgs)):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, cfg)
            loss = torch.nn.functional.cross_entropy(m(x).flatten(0, 1), y.flatten(), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
            opt.step()
            mine = ens.flat[g]
            ref = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
            # Adam moves each element by about lr, and by g / (|g| + eps) of it where g is tiny:
            # there fp32 sum-order noise in g (MAD-Lab's N(0, 0.02) embeddings make attention's
            # q/k gradients ~1e-9) moves the update by a sliver of lr. A wrong formula is off by ~lr.
            tol = 5e-3 * cfg.lr
            assert torch.allclose(mine, ref, rtol=1e-5, atol=tol), (step, g, (mine - ref).abs().max())


def test_ensemble_members_equal_plain_trainer():
    info = EngineInfo()
    results = train_grid(ATTENTION, RECALL, members(CFG, GRID), device="cpu", info=info)
    assert info.mode == "vmap" and info.members == 3 and info.steps == 3 * 4
    for (lr, wd), r in zip(GRID, results):
        assert_same(r, plain(ATTENTION, CFG, lr, wd))


def test_capture_warmup_leaves_the_training_state_untouched():
    """The CUDA-graph path's warm-up really trains; its snapshot/restore must undo all of it
    (emulated on CPU: warm-up + restore, no graph), compaction re-captures included."""
    cfg = CFG.model_copy(update={"epochs": 3, "stop_at_accuracy": 0.3})
    setting = get_task("in-context-recall")(vocab_size=8, seq_len=16, num_train_examples=80,
                                            num_test_examples=40)  # 2 full batches + a tail
    grid = [(1e-4, 0.0), (1e-2, 0.1)]
    ref = train_grid(ATTENTION, setting, members(cfg, grid), device="cpu")
    info = EngineInfo()
    got = train_grid(ATTENTION, setting, members(cfg, grid), device="cpu", info=info,
                     options=EngineOptions(emulate_capture=True, capture_warmup=3))
    assert [r.stop_reason for r in got] == ["completed", "perfect"] and info.recaptures == 1
    for a, b in zip(got, ref):
        assert a.to_dict() | {"wall_s": 0, "setup_s": 0} == b.to_dict() | {"wall_s": 0, "setup_s": 0}
        assert a.history == b.history
    assert_same(got[1], plain(ATTENTION, cfg, *grid[1], setting=setting))


def test_stopped_member_is_frozen_and_reported_at_its_stop_epoch():
    grid = [(1e-4, 0.0), (1e-2, 0.1), (3e-3, 0.0)]
    cfg = CFG.model_copy(update={"epochs": 4})
    free = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu")
    # a threshold the fast member reaches at epoch 2 and the slow one never does
    threshold = free[1].history[1]["test_acc"] - 1e-6  # the stop is strict (>), as Lightning's
    assert max(h["test_acc"] for h in free[0].history) < threshold
    cfg = cfg.model_copy(update={"stop_at_accuracy": threshold})
    cfgs = [cfg.model_copy(update={"lr": lr, "weight_decay": wd}) for lr, wd in grid]
    snapshots, holder = {}, {}

    def snap(g):
        def cb(epoch, record):
            ens = holder["ens"]
            snapshots[(g, epoch)] = ens.flat[ens.slots.index(g)].clone()
            return False
        return cb

    with torch.random.fork_rng():
        ens = build_ensemble(ATTENTION, RECALL, cfgs, torch.device("cpu"),
                             options=EngineOptions(compact=False), on_eval=[snap(g) for g in range(3)])
        holder["ens"] = ens
        results = ens.run()
    assert results[1].stop_reason == "perfect" and results[1].epochs_run <= 2
    assert results[0].stop_reason == "completed" and results[0].epochs_run == 4
    stop_epoch = results[1].epochs_run
    assert results[1].history[-1]["test_acc"] >= threshold  # reported: the lowest-perplexity epoch
    assert torch.equal(ens.flat[1], snapshots[(1, stop_epoch)])  # frozen since its stop
    assert not torch.equal(ens.flat[0], snapshots[(0, stop_epoch)])  # the others train on
    assert_same(results[1], plain(ATTENTION, cfg, *grid[1]))
    # until its stop a member is the free-running member; the slow one is unaffected
    assert results[1].history == free[1].history[:stop_epoch]
    assert_same(results[0], free[0], tol=1e-6)
    # dropping stopped members (compact, the default) changes nothing but the speed
    info = EngineInfo()
    compacted = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu", info=info)
    assert info.recaptures >= 1 and info.member_steps < 3 * info.steps
    for r, c in zip(results, compacted):
        assert_same(c, r)
    # a compiled step (dynamo's eager backend here) pays a compilation for every new member
    # count: "auto" keeps the stopped member frozen when the rebuild costs more than it saves
    info = EngineInfo()
    kept = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu", info=info,
                      options=EngineOptions(compile="eager"))
    assert info.compiled and info.compactions_skipped >= 1 and info.recaptures == 0
    for r, k in zip(results, kept):
        assert_same(k, r)


def test_compaction_pays_only_when_the_saved_steps_outweigh_the_rebuild():
    from mad_bench.train.ensemble import compaction_pays

    # 1 of 6 members dropped, 0.6 s per epoch: 0.1 s saved per epoch left
    assert compaction_pays(1, 6, epochs_left=100, epoch_s=0.6, rebuild_s=5.0)       # 10 s > 5 s
    assert not compaction_pays(1, 6, epochs_left=40, epoch_s=0.6, rebuild_s=5.0)    # 4 s < 5 s
    assert compaction_pays(3, 6, epochs_left=40, epoch_s=0.6, rebuild_s=5.0)        # 12 s > 5 s
    assert not compaction_pays(0, 6, epochs_left=100, epoch_s=0.6, rebuild_s=0.0)   # nothing dropped
    assert not compaction_pays(2, 6, epochs_left=0, epoch_s=0.6, rebuild_s=0.0)     # last epoch


def test_non_vmappable_spec_falls_back_to_a_member_loop_equal_to_plain():
    info = EngineInfo()
    cfg = CFG.model_copy(update={"epochs": 2})
    results = train_grid(LSTM, RECALL, members(cfg, GRID[:2]), device="cpu", info=info)
    assert info.mode == "loop" and "lstm" in info.fallback_reason
    for (lr, wd), r in zip(GRID[:2], results):
        assert_same(r, plain(LSTM, cfg, lr, wd))


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_dropout_masks_match_the_plain_runs(mode):
    """vmap(randomness="same") and the loop's RNG replay draw each plain run's masks."""
    spec = ATTENTION.model_copy(update={"dropout": 0.1})
    cfg = CFG.model_copy(update={"epochs": 1})
    info = EngineInfo()
    results = train_grid(spec, RECALL, members(cfg, GRID[:2]), device="cpu", options=EngineOptions(mode=mode), info=info)
    assert info.mode == mode
    for (lr, wd), r in zip(GRID[:2], results):
        assert_same(r, plain(spec, cfg, lr, wd))


def test_divergence_is_per_member():
    """A member whose weights blow up ends 'diverged' like its plain run; the others train on."""
    cfg = CFG.model_copy(update={"epochs": 2})
    grid = [(1e-3, 0.0), (1.0, 1e30)]  # decay factor 1 - 1e30: inf weights within two steps
    results = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu")
    ref = plain(ATTENTION, cfg, *grid[1])
    assert ref.status == "diverged" and ref.epochs_run == 1
    assert_same(results[1], ref)
    assert math.isnan(results[1].train_loss)
    assert_same(results[0], plain(ATTENTION, cfg, *grid[0]))


def test_engine_through_the_run_layer_writes_the_plain_runners_rows(tmp_path):
    settings = expand(load_suite("smoke"), ["in-context-recall", "compression"], train_overrides={"epochs": 1})
    spec = load_spec({"name": "tiny", "d_model": 16, "layers": [{"type": "attention", "n_heads": 2,
                                                                 "rotary_dim": 0}, "swiglu"]})
    grids = plan([spec], settings, lrs=[1e-3, 5e-4], wds=[0.0, 0.1])
    assert [len(g) for g in grids] == [4, 4]
    requests = requests_of(grids)
    info = EngineInfo()
    assert len(EnsembleEngine().rows(grids[0], "cpu", info=info)) == 4 and info.mode == "vmap"
    # the one check that members differ only in lr / weight decay: the engine's
    mixed = (grids[0].members[0], grids[0].members[1].model_copy(update={"epochs": 2}))
    with pytest.raises(ValueError, match="differ only in lr and weight_decay"):
        train_grid(spec, settings[0].task_setting, mixed, device="cpu")
    plain_store, engine_store = ResultsStore(tmp_path / "plain"), ResultsStore(tmp_path / "engine")
    cpu = dict(device="cpu")
    plain_rows, _ = run_plan(grids, plain_store, ExecOptions(engine="plain", **cpu))
    rows, skipped = run_plan(grids, engine_store, ExecOptions(engine="ensemble", **cpu))
    assert skipped == 0 and len(rows) == len(requests)
    assert all(engine_store.has(r.key) for r in requests)
    a, b = plain_store.load(), engine_store.load()
    assert list(a.columns) == list(b.columns)
    a, b = a.set_index("run_key").sort_index(), b.set_index("run_key").sort_index()
    assert (a["status"] == b["status"]).all() and (a["epochs_run"] == b["epochs_run"]).all()
    assert ((a["test_acc"] - b["test_acc"]).abs() <= 1e-4).all()
    # the engine skips what either trainer already wrote
    assert run_plan(grids, plain_store, ExecOptions(engine="ensemble", **cpu)) == ([], len(requests))


BF16 = CFG.model_copy(update={"precision": "bf16"})


@pytest.mark.parametrize("arch", ["mamba", "short-conv", "deltanet", "hyena", "mlstm", "transformer"])
def test_vmapped_path_equals_the_member_loop_under_bf16(arch):
    """The GPU runs bf16 autocast; vmap + autocast broke conv1d (fp32 bias next to bf16 input)
    where fp32 runs were fine. Loss and every gradient must agree with the per-member loop."""
    spec = load_spec(f"architectures/{arch}.yaml")
    ens = build_ensemble(spec, RECALL, [BF16.model_copy(update={"lr": lr, "weight_decay": wd})
                                        for lr, wd in GRID], torch.device("cpu"),
                         options=EngineOptions(probe=False))
    check = ens.compare_modes(ens.x_train[:4], ens.y_train[:4])
    assert check.ok, check.describe()
    assert check.tol == check.BF16_TOL


def _low_precision_output_dtypes(ens, mode):
    """dtype of every Linear / conv module's output in one bf16 forward of ``mode``."""
    seen = {}
    mods = [(n, m) for n, m in ens.model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))]
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.__setitem__(n, out.dtype))
             for n, m in mods]
    try:
        with ens.autocast():
            ens._forward(ens.x_train[:4], mode)
    finally:
        for h in hooks:
            h.remove()
    return seen


_ARCH = Path(__file__).resolve().parents[1] / "architectures"
SHIPPED = sorted(str(p.relative_to(_ARCH).with_suffix("")) for p in [*_ARCH.glob("*.yaml"), *_ARCH.glob("zoology/*.yaml")])


@pytest.mark.parametrize("arch", [a for a in SHIPPED if a not in ("lstm", "gru")])  # cuDNN RNNs: loop
def test_vmapped_linear_and_conv_layers_run_in_the_autocast_dtype(arch):
    """Under vmap, autocast leaves a Linear's bias in fp32, so a biased Linear returned fp32:
    what followed ran in fp32 and, on CUDA, attention fell off its bf16 flash kernel. Every
    Linear of a vmapped bf16 forward returns what it returns per member: bf16."""
    spec = load_spec(f"architectures/{arch}.yaml")
    ens = build_ensemble(spec, RECALL, [BF16.model_copy(update={"lr": lr, "weight_decay": wd})
                                        for lr, wd in GRID], torch.device("cpu"),
                         options=EngineOptions(probe=False))
    assert ens.mode == "vmap"
    vmapped, looped = _low_precision_output_dtypes(ens, "vmap"), _low_precision_output_dtypes(ens, "loop")
    assert vmapped == looped, {n: (vmapped[n], looped.get(n)) for n in vmapped if vmapped[n] != looped.get(n)}
    assert torch.bfloat16 in vmapped.values(), vmapped  # (mlstm's mixer computes in fp32 on purpose)


def test_probe_rejects_a_vmapped_path_whose_gradients_differ(monkeypatch):
    """A batching rule that gets gradients wrong (as CUDA's cuDNN attention did under vmap)
    sends the spec to the per-member loop, with the reason."""
    from mad_bench.train import ensemble as ens_mod

    real = ens_mod.Ensemble._forward

    def wrong_under_vmap(self, x, mode=None):
        logits, aux = real(self, x, mode)
        if (mode or self.mode) == "vmap":  # right values, wrong gradient
            logits = logits + (logits * 0.5 - (logits * 0.5).detach())
        return logits, aux

    monkeypatch.setattr(ens_mod.Ensemble, "_forward", wrong_under_vmap)
    info = EngineInfo()
    build_ensemble(ATTENTION, RECALL, [CFG, CFG.model_copy(update={"lr": 1e-2})], torch.device("cpu"),
                   info=info)
    assert info.mode == "loop"
    assert "gradient rel err" in info.fallback_reason


MAD_RULES = dict(weight_decay_scope="mad", lr_schedule_unit="epoch", grad_clip=None, eval_reduce="batch",
                 stop_metric="acc_macro")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("rules", ["default", "mad"])
def test_plain_trainer_is_the_one_member_engine_and_equals_the_reference(precision, rules):
    """train() runs the engine with one member (no vmap) and follows the torch.optim oracle."""
    spec = load_spec({"name": "mix", "d_model": 16, "repeat": 1,
                      "layers": [{"type": "attention", "n_heads": 2, "rotary_dim": 0}, "swiglu", "mamba"]})
    cfg = CFG.model_copy(update={"precision": precision, "weight_decay": 0.1, "epochs": 2,
                                 **(MAD_RULES if rules == "mad" else {})})
    got = train(spec, RECALL, cfg, device="cpu")
    ref = plain(spec, cfg, cfg.lr, cfg.weight_decay)
    # bf16 autocast: the same casts on both sides, sums in another order
    assert_same(got, ref, tol=1e-4 if precision == "fp32" else 2e-2)


def test_mad_rules_differ_from_the_defaults_where_mad_lab_does():
    """Each MAD-Lab rule changes the run (so a suite that leaves it out is not MAD's)."""
    base = CFG.model_copy(update={"weight_decay": 0.5, "epochs": 2, "grad_clip": 0.01})
    runs = {"base": train(ATTENTION, RECALL, base, device="cpu")}
    for key, value in MAD_RULES.items():
        if key == "stop_metric":
            continue
        runs[key] = train(ATTENTION, RECALL, base.model_copy(update={key: value}), device="cpu")
    for key in runs:
        if key != "base":
            assert runs[key].test_loss != runs["base"].test_loss, key


def test_weight_decay_scope_mad_spares_biases_norms_and_marked_parameters():
    from mad_bench.compiler import build_model
    from mad_bench.train.core import decays
    spec = load_spec({"name": "m", "d_model": 16, "layers": ["mamba", "swiglu"]})
    model = build_model(spec, vocab_size=8, max_len=16)
    names = [n for n, _ in model.named_parameters()]
    mad = dict(zip(names, decays(model, CFG.model_copy(update={"weight_decay_scope": "mad"}))))
    assert all(decays(model, CFG))  # scope all: every parameter
    spared = {n for n, d in mad.items() if not d}
    assert any(n.endswith("bias") for n in spared)
    assert any("norm" in n for n in spared)
    assert any(n.endswith("A_log") for n in spared) and any(n.endswith(".D") for n in spared)
    assert mad[next(n for n in names if "embed" in n)]  # embeddings and matrices decay
    assert all(mad[n] for n in names if n.endswith("weight") and "norm" not in n)


def test_epoch_cosine_is_torch_cosine_annealing_stepped_per_epoch():
    cfg = CFG.model_copy(update={"lr_schedule_unit": "epoch", "epochs": 5, "lr": 1e-3, "min_lr": 1e-6})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
    steps_per_epoch = 3
    for epoch in range(cfg.epochs):
        for k in range(steps_per_epoch):
            lr = cosine_lr(epoch * steps_per_epoch + k, steps_per_epoch * cfg.epochs, cfg)
            assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_per_batch_macro_is_the_batch_weighted_mean_of_each_batchs_macro():
    """Hand-checked: batch 1 gets class 0 right and class 1 wrong (macro 0.5), batch 2 gets
    class 2 right twice (macro 1.0). Per batch: (0.5 + 1.0) / 2 = 0.75 (MAD-Lab). Over the
    set: classes 0, 1, 2 score 1, 0, 1 -> 2/3."""
    from mad_bench.train.member_metrics import batched_counts, batched_macro
    offsets = torch.zeros(1, 1, dtype=torch.long)
    b1 = batched_counts(torch.tensor([[0, 0]]), torch.tensor([0, 1]), 3, offsets)   # c0 1/1, c1 0/1
    b2 = batched_counts(torch.tensor([[2, 2]]), torch.tensor([2, 2]), 3, offsets)   # c2 2/2
    assert batched_macro(*b1).item() == pytest.approx(0.5)
    assert batched_macro(*b2).item() == pytest.approx(1.0)
    per_batch = (batched_macro(*b1) + batched_macro(*b2)).item() / 2
    whole = batched_macro(*(a + b for a, b in zip(b1, b2))).item()
    assert per_batch == pytest.approx(0.75) and whole == pytest.approx(2 / 3)


def test_stop_is_strict_on_the_watched_metric_and_the_score_is_the_lowest_perplexity_epoch():
    from mad_bench.train.core import RunResult, RunRules
    cfg = CFG.model_copy(update={"stop_at_accuracy": 0.9, "stop_metric": "acc_macro"})
    rules = RunRules(cfg, RunResult(status="ok", stop_reason="completed"))
    assert not rules.after_eval(1, {"acc": 0.95, "acc_macro": 0.9, "loss": 0.2, "ppl": 1.2})  # 0.9 is not > 0.9
    assert rules.after_eval(2, {"acc": 0.5, "acc_macro": 0.91, "loss": 0.3, "ppl": 1.4})
    r = rules.result
    assert r.stop_reason == "perfect"
    assert r.best_epoch == 1 and r.test_acc_macro == 0.9  # epoch 1 had the lower perplexity


@pytest.mark.parametrize("mode", ["vmap", "single"])
def test_the_compiled_step_computes_the_eager_step(mode):
    """torch.compile of the step's two halves (aot_eager here: the same graphs that inductor
    fuses on CUDA) trains every member as the eager step does."""
    grid = GRID if mode == "vmap" else GRID[:1]
    cfg = CFG.model_copy(update={"epochs": 1, "grad_clip": 0.5, **MAD_RULES})
    eager = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu", options=EngineOptions(compile=None))
    info = EngineInfo()
    got = train_grid(ATTENTION, RECALL, members(cfg, grid), device="cpu", info=info,
                     options=EngineOptions(compile="aot_eager"))
    assert info.mode == mode and info.compiled and info.compile_failure is None
    assert info.graph_breaks == []
    for a, b in zip(got, eager):
        assert_same(a, b, tol=1e-5)


def test_a_graph_break_in_the_compiled_step_is_reported(monkeypatch):
    """torch.compile survives a graph break silently (the step runs in pieces, unfused): the
    engine reports dynamo's reason in EngineInfo.graph_breaks, and still trains what eager does."""
    from mad_bench.primitives.channel.swiglu import SwiGLU
    forward = SwiGLU.forward

    def breaking(self, x):
        torch._dynamo.graph_break()
        return forward(self, x)

    monkeypatch.setattr(SwiGLU, "forward", breaking)
    torch._dynamo.reset()
    cfg = CFG.model_copy(update={"epochs": 1})
    eager = train_grid(ATTENTION, RECALL, members(cfg, GRID[:2]), device="cpu", options=EngineOptions(compile=None))
    info = EngineInfo()
    got = train_grid(ATTENTION, RECALL, members(cfg, GRID[:2]), device="cpu", info=info,
                     options=EngineOptions(compile="aot_eager"))
    torch._dynamo.reset()
    assert info.compiled and info.graph_breaks, info
    assert any("graph_break" in r or "graph break" in r.lower() for r in info.graph_breaks), info.graph_breaks
    for a, b in zip(got, eager):
        assert_same(a, b, tol=1e-5)


def test_the_vmap_check_runs_once_per_spec_and_shape():
    from mad_bench.train import ensemble as ens_mod
    ens_mod._PROBED.clear()
    cfg = CFG.model_copy(update={"epochs": 1})
    first, second = EngineInfo(), EngineInfo()
    train_grid(ATTENTION, RECALL, members(cfg, GRID[:2]), device="cpu", info=first)
    other = RECALL.model_copy(update={"num_train_examples": 96})  # another setting, same shapes
    train_grid(ATTENTION, other, members(cfg, GRID[:2]), device="cpu", info=second)
    assert first.mode == second.mode == "vmap"
    assert not any("earlier setting" in n for n in first.notes)
    assert any("earlier setting" in n for n in second.notes)


def test_bf16_runs_of_a_tf32_layer_take_fp32_matmuls_at_tf32_and_give_the_precision_back(monkeypatch):
    """A bf16 run on CUDA of a model holding a layer that opted in (mLSTM: IEEE fp32 cost it
    2.7x) sets torch's fp32 matmul precision to 'high' (TF32) while it trains and restores the
    caller's afterwards, on error too; other models, fp32 runs and the CPU keep 'highest'.
    train_grid trains inside it, with the ensemble's model."""
    from mad_bench.compiler import build_model
    from mad_bench.train import ensemble
    from mad_bench.train.core import fp32_matmul

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    mlstm = build_model(load_spec("architectures/mlstm.yaml"), vocab_size=8, max_len=16)
    other = build_model(ATTENTION, vocab_size=8, max_len=16)
    assert torch.get_float32_matmul_precision() == "highest"
    with fp32_matmul(cuda, TrainConfig(precision="auto"), mlstm):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "highest"
    for dev, precision, model in ((cuda, "fp32", mlstm), (cpu, "bf16", mlstm), (cpu, "auto", mlstm),
                                  (cuda, "bf16", other)):
        with fp32_matmul(dev, TrainConfig(precision=precision), model):
            assert torch.get_float32_matmul_precision() == "highest", (dev, precision)
    with pytest.raises(RuntimeError, match="boom"):
        with fp32_matmul(cuda, TrainConfig(precision="bf16"), mlstm):
            raise RuntimeError("boom")
    assert torch.get_float32_matmul_precision() == "highest"

    seen = []
    real = ensemble.fp32_matmul

    def spy(dev, cfg, model):
        seen.append((dev.type, cfg.precision, type(model).__name__))
        return real(dev, cfg, model)

    monkeypatch.setattr(ensemble, "fp32_matmul", spy)
    ensemble.train_grid(ATTENTION, RECALL, [CFG.model_copy(update={"epochs": 1})], "cpu")
    assert seen == [("cpu", "auto", type(other).__name__)]
