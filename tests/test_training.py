"""The trainer learns what only learning can reach, deterministically, and survives divergence."""
import math

import pytest
import torch

import mad_bench.train.core as core_mod
from mad_bench import load_spec
from mad_bench.configs.tasks import get_task
from mad_bench.configs.train import TrainConfig
from mad_bench.train.trainer import cosine_lr, train

RECALL = get_task("in-context-recall")(vocab_size=8, seq_len=16, num_train_examples=1024,
                                       num_test_examples=256)
ATTENTION = load_spec({"name": "att", "d_model": 32, "repeat": 2,
                       "layers": [{"type": "attention", "n_heads": 4, "rotary_dim": 0}, "swiglu"]})
NO_MIXING = load_spec({"name": "mlp", "d_model": 32, "repeat": 2, "layers": ["swiglu"]})
CFG = TrainConfig(epochs=30, batch_size=32, lr=3e-3, weight_decay=0.0, stop_at_accuracy=0.99)


def test_attention_learns_recall_and_a_channel_mixer_cannot():
    # With MAD-Lab's initialisation (embeddings N(0, 0.02), model version 2) this 2-layer,
    # width-32 attention model without position information learns recall more slowly than with
    # PyTorch's N(0, 1) embeddings (which solved it within 30 epochs): measured on the CPU, test
    # accuracy 0.61 at epoch 11 and 0.67 at epoch 30. The stop threshold is set between that and
    # what a position-wise model can reach (about 0.25).
    cfg = CFG.model_copy(update={"stop_at_accuracy": 0.6})
    solved = train(ATTENTION, RECALL, cfg, device="cpu")
    assert solved.status == "ok" and solved.stop_reason == "perfect"
    # stopped once test accuracy passed 0.6; scored at its lowest-perplexity epoch (MAD-Lab)
    assert solved.history[-1]["test_acc"] > 0.6 and solved.epochs_run < cfg.epochs
    assert solved.test_acc >= 0.5
    blind = train(NO_MIXING, RECALL, cfg, device="cpu")
    # 4 possible values: a position-wise model can only guess (about 0.25)
    assert blind.test_acc <= 0.4 and blind.stop_reason == "completed"
    assert blind.epochs_run == CFG.epochs and len(blind.history) == CFG.epochs


def test_deterministic_for_a_seed_and_different_across_seeds():
    cfg = CFG.model_copy(update={"epochs": 2})
    a, b = train(ATTENTION, RECALL, cfg, device="cpu"), train(ATTENTION, RECALL, cfg, device="cpu")
    assert a.to_dict() | {"wall_s": 0, "setup_s": 0} == b.to_dict() | {"wall_s": 0, "setup_s": 0}
    c = train(ATTENTION, RECALL, cfg.model_copy(update={"seed": 7}), device="cpu")
    assert c.test_loss != a.test_loss


def test_diverged_run_ends_with_status_not_exception(monkeypatch):
    real_build = core_mod.build_model

    def poisoned(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.head.register_forward_hook(lambda mod, inp, out: out * float("nan"))
        return model

    monkeypatch.setattr(core_mod, "build_model", poisoned)
    result = train(ATTENTION, RECALL, CFG.model_copy(update={"epochs": 3}), device="cpu")
    assert result.status == "diverged" and result.epochs_run == 1
    assert math.isnan(result.train_loss)


def test_eval_select_last_vs_best_and_early_stop():
    cfg = CFG.model_copy(update={"epochs": 4, "stop_at_accuracy": None, "eval_select": "last"})
    last = train(NO_MIXING, RECALL, cfg, device="cpu")
    assert last.best_epoch == 4 and last.test_loss == pytest.approx(last.history[-1]["test_loss"])
    best = train(NO_MIXING, RECALL, cfg.model_copy(update={"eval_select": "best"}), device="cpu")
    assert best.test_loss == pytest.approx(min(h["test_loss"] for h in best.history))
    stopped = train(NO_MIXING, RECALL, cfg.model_copy(update={"early_stop_patience": 1,
                                                             "epochs": 30, "lr": 1e-6,
                                                             "min_lr": 1e-6}), device="cpu")
    assert stopped.stop_reason in ("early_stop", "completed")


def test_pruning_callback_stops_the_run():
    seen = []

    def on_eval(epoch, metrics):
        seen.append((epoch, metrics["test_acc"]))
        return epoch == 2

    result = train(NO_MIXING, RECALL, CFG, device="cpu", on_eval=on_eval)
    assert result.status == "pruned" and result.epochs_run == 2 and [e for e, _ in seen] == [1, 2]


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_steps=10)
    assert cosine_lr(0, 110, cfg) == pytest.approx(1e-4)
    assert cosine_lr(9, 110, cfg) == pytest.approx(1e-3)
    assert cosine_lr(60, 110, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert cosine_lr(110, 110, cfg) == pytest.approx(1e-5)


def test_train_config_errors():
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-6, min_lr=1e-3)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_a_moe_spec_trains_with_its_aux_loss():
    spec = load_spec({"name": "moe", "d_model": 32, "layers": [{"type": "attention", "n_heads": 4}, "moe"]})
    cfg = CFG.model_copy(update={"epochs": 1})
    result = train(spec, RECALL, cfg, device="cpu")
    assert result.status == "ok" and torch.isfinite(torch.tensor(result.train_loss))
