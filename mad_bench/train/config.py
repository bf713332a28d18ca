"""Training hyperparameters of one run (MAD-Lab's protocol are the defaults)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(200, ge=1, description="passes over the training set (MAD: 200)")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(5e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    min_lr: float = Field(1e-6, ge=0, description="end of the cosine schedule")
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: off)")
    eval_every: int = Field(1, ge=1, description="evaluate every N epochs")
    eval_select: Literal["best", "last"] = Field(
        "best", description="best: the epoch of lowest test loss (MAD-Lab); last: the final epoch")
    stop_at_accuracy: float | None = Field(
        0.999, gt=0, le=1.0, description="stop once test accuracy reaches this (MAD: 0.999)")
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
