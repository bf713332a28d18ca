"""Training hyperparameters of one run (MAD-Lab's protocol are the defaults)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    epochs: int = Field(200, ge=1, description="passes over the training set (MAD: 200)")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(5e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0)
    # The MAD paper's appendix states AdamW betas (0.9, 0.98); MAD-Lab's code (train.py ->
    # mad/model/pl_model_wrapper.py configure_optimizers) passes none, i.e. torch's (0.9, 0.999).
    # We keep the paper's.
    betas: tuple[float, float] = (0.9, 0.98)
    min_lr: float = Field(1e-6, ge=0, description="end of the cosine schedule")
    warmup_steps: int = Field(0, ge=0)
    lr_schedule_unit: Literal["step", "epoch"] = Field(
        "step", description="cosine lr updated every optimizer step, or once per epoch "
        "(MAD-Lab: CosineAnnealingLR(T_max=epochs), stepped per epoch by Lightning)")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: off; MAD-Lab: off)")
    weight_decay_scope: Literal["all", "mad"] = Field(
        "all", description="all: every parameter decays; mad: not biases, norm weights or "
        "parameters marked _no_weight_decay (Mamba's A_log, D), as MAD-Lab's configure_optimizers")
    eval_every: int = Field(1, ge=1, description="evaluate every N epochs")
    eval_reduce: Literal["set", "batch"] = Field(
        "set", description="test metrics over the whole test set, or per test batch then the "
        "batch-weighted mean (MAD-Lab: Lightning's on_epoch logging of per-batch values)")
    eval_select: Literal["best", "last"] = Field(
        "best", description="best: the epoch of lowest test perplexity (MAD-Lab's best "
        "checkpoint); last: the final epoch")
    stop_metric: Literal["acc", "acc_macro"] = Field(
        "acc", description="the test accuracy that stop_at_accuracy watches (MAD-Lab: acc_macro)")
    stop_at_accuracy: float | None = Field(
        0.999, gt=0, le=1.0, description="stop once stop_metric exceeds this, strictly, as "
        "Lightning's EarlyStopping(stopping_threshold) (MAD: 0.999); 1.0 stops at a perfect score")
    early_stop_patience: int | None = Field(
        None, ge=1, description="stop after this many evals without a better test loss")
    aux_loss_weight: float = Field(1.0, ge=0, description="scale on the layers' auxiliary losses")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    seed: int = 12345

    @model_validator(mode="after")
    def _lr_above_floor(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        return self
