"""The oracle of the training step: one run written plainly with torch.optim.AdamW,
``clip_grad_norm_`` and a Python loop over batches and epochs (the trainer as it was before
the engine took its place). The engine's per-run results are tested against it, as the
kernels are tested against their naive recurrences. Slow and simple on purpose."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mad_bench.configs.train import TrainConfig
from mad_bench.tasks import generate
from mad_bench.tasks.metrics import AccuracyCounts, accuracy_counts
from mad_bench.train.core import RunResult, RunRules, autocast, cosine_lr, decays, prepare_run


def members(cfg: TrainConfig, grid) -> list[TrainConfig]:
    """``cfg`` at each (lr, weight decay) of ``grid``: the member configs the engine takes."""
    return [TrainConfig.model_validate({**cfg.model_dump(), "lr": lr, "weight_decay": wd}) for lr, wd in grid]


@torch.no_grad()
def evaluate(model, inputs, targets, cfg: TrainConfig, num_classes: int, device) -> dict:
    """Test metrics, whole-set or per batch then batch-weighted (``cfg.eval_reduce``)."""
    model.eval()
    counts = AccuracyCounts.zeros(num_classes, device)
    loss_sum, n_tok, per_batch, n_ex = 0.0, 0, [0.0, 0.0, 0.0], 0
    for i in range(0, inputs.shape[0], cfg.batch_size):
        x, y = inputs[i:i + cfg.batch_size], targets[i:i + cfg.batch_size]
        with autocast(device, cfg):
            logits = model(x)
        logits = logits.float()
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum").item()
        k = int((y != -100).sum())
        batch = accuracy_counts(logits, y, num_classes)
        counts.add_(batch)
        loss_sum, n_tok = loss_sum + ce, n_tok + k
        b_loss = ce / max(k, 1)
        for j, v in enumerate((b_loss, math.exp(b_loss), batch.macro().item())):
            per_batch[j] += v * x.shape[0]
        n_ex += x.shape[0]
    model.train()
    if cfg.eval_reduce == "batch":
        loss, ppl, macro = (v / n_ex for v in per_batch)
    else:
        loss = loss_sum / max(n_tok, 1)
        ppl, macro = math.exp(min(loss, 700.0)), counts.macro().item()
    return {"acc": counts.micro().item(), "acc_macro": macro, "loss": loss, "ppl": ppl}


def reference_train(spec, setting, cfg: TrainConfig, device="cpu", on_eval=None) -> RunResult:
    dev = torch.device(device)
    with torch.random.fork_rng():
        data = (generate(setting, "train", cfg.seed), generate(setting, "test", cfg.seed))
        model, x_train, y_train, x_test, y_test, vocab = prepare_run(spec, setting, cfg.seed, dev, data)
        flags = decays(model, cfg)
        params = list(model.parameters())
        groups = [{"params": [p for p, f in zip(params, flags) if f], "weight_decay": cfg.weight_decay},
                  {"params": [p for p, f in zip(params, flags) if not f], "weight_decay": 0.0}]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)
        n = x_train.shape[0]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        shuffle = torch.Generator().manual_seed(cfg.seed + 1)
        rules = RunRules(cfg, RunResult(status="ok", stop_reason="completed"), on_eval)
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(n, generator=shuffle)
            counts = AccuracyCounts.zeros(vocab, dev)
            loss_sum, finite = 0.0, True
            for i in range(0, n, cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                x, y = x_train[idx], y_train[idx]
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(step, total, cfg)
                with autocast(dev, cfg):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
                    aux = model.aux_loss()
                    full = loss + cfg.aux_loss_weight * aux if aux is not None else loss
                opt.zero_grad(set_to_none=True)
                full.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                finite &= bool(torch.isfinite(loss))
                loss_sum += loss.item()
                counts.add_(accuracy_counts(logits.detach(), y, vocab))
                step += 1
            if rules.after_training(epoch, finite, loss_sum / steps_per_epoch if finite else math.nan,
                                    counts.micro().item() if finite else math.nan):
                break
            if not rules.evaluates(epoch):
                continue
            if rules.after_eval(epoch, evaluate(model, x_test, y_test, cfg, vocab, dev)):
                break
        result = rules.result
        result.params = model.num_params()
        return result
