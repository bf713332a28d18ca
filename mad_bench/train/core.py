"""The rules of one training run, in one place for the plain trainer and the ensemble engine.

Both train a spec on a task setting the same way, and a change to a rule must reach both:

* set-up: the device, the data on it, the model built from the run's seed (:func:`prepare_run`);
* numerics: bf16 autocast on CUDA by default (:func:`autocast`), the cosine schedule
  (:func:`cosine_lr`);
* the per-epoch rules (:class:`RunRules`): divergence, ``eval_select`` best|last,
  stop-at-accuracy, early stop, pruning by a callback, and the result they produce.

The plain trainer applies them to one run; the engine to each member of an ensemble.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..compiler import build_model
from ..configs.train import TrainConfig
from ..tasks import generate


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
    setup_s: float = 0.0          # the part of wall_s spent before the first step
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # task-defined test columns (see trainer.train)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("history")
        extra = out.pop("extra")
        return {**out, **extra}


# (epoch, metrics) -> True to stop the run as pruned (an Optuna pruner's decision)
EvalCallback = Callable[[int, dict], bool]


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use cpu)")
    return torch.device(device)


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """``precision: auto`` is bf16 autocast on CUDA and fp32 elsewhere."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, cfg: TrainConfig, cache: bool = True):
    """The run's autocast. ``cache=False`` for code captured in CUDA graphs, where autocast's
    weight-cast cache must be off (torch.cuda.graphs docs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg, device),
                          cache_enabled=cache)


@contextmanager
def fp32_matmul(device: torch.device, cfg: TrainConfig, model: torch.nn.Module):
    """A bf16 run's fp32 matmuls at TF32 (``set_float32_matmul_precision('high')``) for its
    duration, on CUDA, where a layer of ``model`` asks for it (``tf32_in_bf16_runs``);
    anything else keeps the precision it has, and the caller's comes back afterwards.

    Under bf16 autocast mLSTM's whole mixer stays fp32 on purpose (its bf16 gradient is wrong,
    see primitives/sequence/mlstm.py). At torch's default ('highest') that meant IEEE fp32
    GEMMs and ``tl.dot(input_precision="ieee")``: its step took 49.3 ms on an H200, at TF32
    18.1 ms with its engine check still passing (BENCHMARKS.md). TF32 keeps 10 mantissa bits,
    8x bf16's precision. Layers opt in once checked on a GPU at TF32: the flag also switches
    the chunked kernels' upcast tiles to TF32 ``tl.dot``, unchecked for the others so far."""
    prev = torch.get_float32_matmul_precision()
    if device.type == "cuda" and uses_bf16(cfg, device) and any(
            getattr(m, "tf32_in_bf16_runs", False) for m in model.modules()):
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prev)


def cosine_lr(step: int, total: int, cfg: TrainConfig) -> float:
    """The lr of optimizer step ``step`` (0-based) of ``total``. ``lr_schedule_unit: epoch``
    holds it for an epoch (``total // cfg.epochs`` steps) at
    ``min_lr + (lr - min_lr)(1 + cos(pi e / epochs)) / 2`` for epoch ``e`` (0-based): torch's
    CosineAnnealingLR(T_max=epochs, eta_min=min_lr) stepped once per epoch, as MAD-Lab's
    Lightning module does (mad/model/pl_model_wrapper.py, configure_optimizers)."""
    if cfg.lr_schedule_unit == "epoch":
        epoch = step // max(1, total // cfg.epochs)
        progress = epoch / cfg.epochs
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


NORM_TYPES: tuple[type, ...] = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm,
                                torch.nn.BatchNorm1d)


def decays(model: torch.nn.Module, cfg: TrainConfig) -> list[bool]:
    """Per parameter (``model.named_parameters()`` order): does weight decay apply to it?

    ``weight_decay_scope: mad`` follows MAD-Lab's configure_optimizers
    (mad/model/pl_model_wrapper.py): no decay for biases, norm weights, or parameters marked
    ``_no_weight_decay`` (Mamba's A_log and D). MAD-Lab tests ``"bias" in name`` and
    ``"norm" in name`` on its own parameter names; here a norm is recognised by its module
    type or a module name containing "norm", a bias by the parameter's own name."""
    if cfg.weight_decay_scope == "all":
        return [True for _ in model.parameters()]
    in_norm: set[int] = set()
    for mname, module in model.named_modules():
        leaf = mname.rsplit(".", 1)[-1].lower()
        if isinstance(module, NORM_TYPES) or "norm" in leaf or type(module).__name__.lower().endswith("norm"):
            in_norm.update(id(p) for p in module.parameters(recurse=False))
    out = []
    for name, p in model.named_parameters():
        own = name.rsplit(".", 1)[-1]
        out.append(not ("bias" in own or id(p) in in_norm or getattr(p, "_no_weight_decay", False)))
    return out


def prepare_run(spec, setting, seed: int, device: torch.device, data=None):
    """The data of ``setting`` (generated from ``seed`` unless ``data`` = (train, test) is
    given) on ``device``, and the model built after ``torch.manual_seed(seed)``.

    Seeds the global RNG: call inside ``torch.random.fork_rng`` to leave the caller's alone.
    Returns ``(model, x_train, y_train, x_test, y_test, vocab)``."""
    train_data, test_data = data or (generate(setting, "train", seed), generate(setting, "test", seed))
    x_train, y_train = train_data.inputs.to(device), train_data.targets.to(device)
    x_test, y_test = test_data.inputs.to(device), test_data.targets.to(device)
    vocab = setting.model_vocab_size()
    torch.manual_seed(seed)
    model = build_model(spec, vocab_size=vocab, max_len=max(x_train.shape[1], x_test.shape[1]),
                        backbone=setting.backbone).to(device)
    return model, x_train, y_train, x_test, y_test, vocab


@dataclass
class RunRules:
    """One run's stopping and selection rules, applied once per epoch; fills ``result``."""
    cfg: TrainConfig
    result: RunResult
    on_eval: EvalCallback | None = None
    best_ppl: float = math.inf   # the lowest test perplexity so far (selection and patience)
    evals_since_best: int = 0

    @property
    def done(self) -> bool:
        return self.result.stop_reason != "completed"

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` ends with an evaluation (every ``eval_every``, and the last)."""
        return not (epoch % self.cfg.eval_every) or epoch == self.cfg.epochs

    def after_training(self, epoch: int, finite: bool, train_loss: float, train_acc: float) -> bool:
        """The epoch's training numbers (mean loss per step); True when the run stops here
        (a non-finite loss: diverged)."""
        r = self.result
        r.epochs_run = epoch
        if not finite:
            r.status = r.stop_reason = "diverged"
            r.train_loss = float("nan")
            return True
        r.train_loss = train_loss
        r.train_acc = train_acc
        return False

    def after_eval(self, epoch: int, metrics: dict) -> bool:
        """The epoch's test ``metrics`` (acc, acc_macro, loss, ppl); True when the run stops here.

        MAD-Lab (train.py): the scored model is the checkpoint of lowest test perplexity
        (ModelCheckpoint(monitor="test/Perplexity_epoch", mode="min"), re-validated after fit),
        also when EarlyStopping(monitor="test/Accuracy_epoch", stopping_threshold=0.999) ended
        the run; that threshold is strict (``>``)."""
        r, cfg = self.result, self.cfg
        record = {"epoch": epoch, "train_loss": r.train_loss, "train_acc": r.train_acc,
                  **{f"test_{k}": v for k, v in metrics.items()}}
        r.history.append(record)
        if not math.isfinite(metrics["loss"]):
            r.status = r.stop_reason = "diverged"
            return True
        ppl = metrics.get("ppl", math.exp(min(metrics["loss"], 700.0)))
        improved = ppl < self.best_ppl
        if improved:
            self.best_ppl, self.evals_since_best = ppl, 0
        else:
            self.evals_since_best += 1
        if cfg.eval_select == "last" or improved:
            self._select(epoch, metrics)
        if self.on_eval is not None and self.on_eval(epoch, record):
            r.status = r.stop_reason = "pruned"
            return True
        if cfg.stop_at_accuracy is not None:
            watched = metrics[cfg.stop_metric]
            if watched > cfg.stop_at_accuracy or watched >= 1.0:
                r.stop_reason = "perfect"
                return True
        if cfg.early_stop_patience is not None and self.evals_since_best >= cfg.early_stop_patience:
            r.stop_reason = "early_stop"
            return True
        return False

    def _select(self, epoch: int, metrics: dict) -> None:
        r = self.result
        r.test_acc, r.test_acc_macro = metrics["acc"], metrics["acc_macro"]
        r.test_loss, r.best_epoch = metrics["loss"], epoch
