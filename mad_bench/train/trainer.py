"""Train one spec on one task setting and score it on the test split.

The plain reference trainer: AdamW, cosine schedule to ``min_lr`` (optional warmup), gradient
clipping, bf16 autocast on CUDA, the layers' auxiliary losses added, evaluation every
``eval_every`` epochs. Metrics are accumulated on the device and read once per evaluation.
A run whose loss turns NaN/inf ends as ``diverged`` with its last metrics instead of raising.
The set-up, numerics and per-epoch rules are :mod:`.core`'s, shared with the ensemble engine.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..spec import ArchitectureSpec
from ..tasks.metrics import AccuracyCounts, accuracy_counts
from .config import TrainConfig
from .core import (EvalCallback, RunResult, RunRules, autocast, cosine_lr, prepare_run,
                   resolve_device)

__all__ = ["train", "evaluate", "RunResult", "EvalCallback", "cosine_lr", "resolve_device"]


@torch.no_grad()
def evaluate(model, inputs, targets, batch_size, num_classes, device, cfg) -> dict:
    model.eval()
    counts = AccuracyCounts.zeros(num_classes, device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    n_scored = torch.zeros((), device=device, dtype=torch.float64)
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i:i + batch_size], targets[i:i + batch_size]
        with autocast(device, cfg):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100,
                                    reduction="sum")
        n_scored += (y != -100).sum()
        counts.add_(accuracy_counts(logits, y, num_classes))
    model.train()
    return {"acc": counts.micro().item(), "acc_macro": counts.macro().item(),
            "loss": (loss_sum / n_scored.clamp(min=1)).item()}


def train(spec: ArchitectureSpec, setting, cfg: TrainConfig, device: str | None = None,
          on_eval: EvalCallback | None = None, progress=None, data=None) -> RunResult:
    """Train ``spec`` on ``setting`` (a task setting) and return its scores.

    ``progress``: an object with ``start(total_steps)``, ``advance(n, **info)`` (e.g. a rich
    progress task wrapper) or None. ``data``: (train, test) TaskData to reuse, else generated.
    """
    dev = resolve_device(device)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        data = data or (setting.generate("train", cfg.seed), setting.generate("test", cfg.seed))
        model, x_train, y_train, x_test, y_test, vocab = prepare_run(spec, setting, cfg.seed, dev, data)
        result = _fit(model, x_train, y_train, x_test, y_test, vocab, cfg, dev, on_eval, progress)
        # task hook: extra test columns from the final model (mqar-mixture: accuracy per segment)
        test_columns = getattr(setting, "test_columns", None)
        if test_columns is not None and result.status == "ok":
            model.eval()
            with autocast(dev, cfg):
                result.extra = test_columns(model, x_test, data[1], cfg.batch_size)
    result.params = model.num_params()
    result.wall_s = time.perf_counter() - t0
    return result


def _fit(model, x_train, y_train, x_test, y_test, vocab, cfg, dev, on_eval, progress) -> RunResult:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=cfg.betas)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    shuffle = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
    if progress is not None:
        progress.start(total_steps)

    rules = RunRules(cfg, RunResult(status="ok", stop_reason="completed"), on_eval)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=shuffle).to(dev)
        train_counts = AccuracyCounts.zeros(vocab, dev)
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        finite = torch.ones((), device=dev, dtype=torch.bool)
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x, y = x_train[idx], y_train[idx]
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total_steps, cfg)
            with autocast(dev, cfg):
                logits = model(x)
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
                aux = model.aux_loss()
                total = loss + cfg.aux_loss_weight * aux if aux is not None else loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            finite &= torch.isfinite(loss.detach())
            loss_sum += loss.detach()
            train_counts.add_(accuracy_counts(logits.detach(), y, vocab))
            step += 1
            if progress is not None:
                progress.advance(1)
        ok = bool(finite)  # one sync per epoch
        if rules.after_training(epoch, ok, (loss_sum / steps_per_epoch).item() if ok else math.nan,
                                train_counts.micro().item() if ok else math.nan):
            return rules.result
        if not rules.evaluates(epoch):
            continue
        metrics = evaluate(model, x_test, y_test, cfg.batch_size, vocab, dev, cfg)
        if progress is not None and math.isfinite(metrics["loss"]):
            progress.advance(0, acc=metrics["acc"], loss=metrics["loss"], epoch=epoch)
        if rules.after_eval(epoch, metrics):
            return rules.result
    return rules.result
