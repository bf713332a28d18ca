"""Train one spec on one task setting and score it on the test split.

The plain reference trainer: AdamW, cosine schedule to ``min_lr`` (optional warmup), gradient
clipping, bf16 autocast on CUDA, the layers' auxiliary losses added, evaluation every
``eval_every`` epochs. Metrics are accumulated on the device and read once per evaluation.
A run whose loss turns NaN/inf ends as ``diverged`` with its last metrics instead of raising.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..compiler import build_model
from ..spec import ArchitectureSpec
from ..tasks.metrics import AccuracyCounts, accuracy_counts
from .config import TrainConfig


@dataclass
class RunResult:
    status: str                   # ok | diverged | pruned
    stop_reason: str              # completed | perfect | early_stop | diverged | pruned
    test_acc: float = float("nan")        # micro accuracy over scored positions
    test_acc_macro: float = float("nan")  # MAD's metric: mean per-class accuracy
    test_loss: float = float("nan")
    train_acc: float = float("nan")
    train_loss: float = float("nan")
    epochs_run: int = 0
    best_epoch: int = 0
    params: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # task-defined test columns (see train())

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("history")
        extra = out.pop("extra")
        return {**out, **extra}


# (epoch, metrics) -> True to stop the run as pruned (an Optuna pruner's decision)
EvalCallback = Callable[[int, dict], bool]


def cosine_lr(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use cpu)")
    return torch.device(device)


def _autocast(device: torch.device, cfg: TrainConfig):
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


@torch.no_grad()
def evaluate(model, inputs, targets, batch_size, num_classes, device, cfg) -> dict:
    model.eval()
    counts = AccuracyCounts.zeros(num_classes, device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    n_scored = torch.zeros((), device=device, dtype=torch.float64)
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i:i + batch_size], targets[i:i + batch_size]
        with _autocast(device, cfg):
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
    train_data, test_data = data or (setting.generate("train", cfg.seed), setting.generate("test", cfg.seed))
    x_train, y_train = train_data.inputs.to(dev), train_data.targets.to(dev)
    x_test, y_test = test_data.inputs.to(dev), test_data.targets.to(dev)
    vocab = setting.model_vocab_size()

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = build_model(spec, vocab_size=vocab, max_len=max(x_train.shape[1], x_test.shape[1]),
                            backbone=setting.backbone).to(dev)
        result = _fit(model, x_train, y_train, x_test, y_test, vocab, cfg, dev, on_eval, progress)
        # task hook: extra test columns from the final model (mqar-mixture: accuracy per segment)
        test_columns = getattr(setting, "test_columns", None)
        if test_columns is not None and result.status == "ok":
            model.eval()
            with _autocast(dev, cfg):
                result.extra = test_columns(model, x_test, test_data, cfg.batch_size)
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

    result = RunResult(status="ok", stop_reason="completed")
    best_loss, evals_since_best, step = math.inf, 0, 0
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
            with _autocast(dev, cfg):
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
        result.epochs_run = epoch
        if not bool(finite):  # one sync per epoch
            result.status = result.stop_reason = "diverged"
            result.train_loss = float("nan")
            return result
        result.train_loss = (loss_sum / steps_per_epoch).item()
        result.train_acc = train_counts.micro().item()
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            continue
        metrics = evaluate(model, x_test, y_test, cfg.batch_size, vocab, dev, cfg)
        record = {"epoch": epoch, "train_loss": result.train_loss, "train_acc": result.train_acc,
                  **{f"test_{k}": v for k, v in metrics.items()}}
        result.history.append(record)
        if not math.isfinite(metrics["loss"]):
            result.status = result.stop_reason = "diverged"
            return result
        improved = metrics["loss"] < best_loss
        if improved:
            best_loss, evals_since_best = metrics["loss"], 0
        else:
            evals_since_best += 1
        if cfg.eval_select == "last" or improved:
            result.test_acc, result.test_acc_macro = metrics["acc"], metrics["acc_macro"]
            result.test_loss, result.best_epoch = metrics["loss"], epoch
        if progress is not None:
            progress.advance(0, acc=metrics["acc"], loss=metrics["loss"], epoch=epoch)
        if on_eval is not None and on_eval(epoch, record):
            result.status = result.stop_reason = "pruned"
            return result
        if cfg.stop_at_accuracy is not None and metrics["acc"] >= cfg.stop_at_accuracy:
            # the score cannot improve further: report this epoch
            result.test_acc, result.test_acc_macro = metrics["acc"], metrics["acc_macro"]
            result.test_loss, result.best_epoch = metrics["loss"], epoch
            result.stop_reason = "perfect"
            return result
        if cfg.early_stop_patience is not None and evals_since_best >= cfg.early_stop_patience:
            result.stop_reason = "early_stop"
            return result
    return result
