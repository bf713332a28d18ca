"""One run: its request (spec x suite setting x training config), its training through the
plain trainer, and its result row.

Below the runner, the executors and the engine alike (all of them build rows here), so a row
has one shape whoever trained it.
"""
from __future__ import annotations

import platform
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from . import __version__
from .configs.architecture import ArchitectureSpec
from .configs.train import TrainConfig
from .results.store import run_key
from .suite import Setting
from .train.trainer import RunResult, resolve_device, train


@dataclass(frozen=True)
class RunRequest:
    spec: ArchitectureSpec
    setting: Setting
    training: TrainConfig

    @property
    def key(self) -> str:
        return run_key(self.spec.spec_hash(), self.setting.task, self.setting.variables(),
                       self.training.model_dump(mode="json"))

    def describe(self) -> str:
        return (f"{self.spec.name} | {self.setting.task} [{self.setting.setting_id}] "
                f"lr={self.training.lr:g} wd={self.training.weight_decay:g} seed={self.training.seed}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def sequence_mixer(spec: ArchitectureSpec) -> str:
    """The spec's sequence mixer type(s) in order, '+'-joined (the leaderboard's ``--by
    primitive`` groups on it); ``(none)`` for a stack of channel mixers only."""
    return "+".join(spec.sequence_mixers()) or "(none)"


def make_row(req: RunRequest, result: RunResult | None, device: torch.device,
             error: str | None = None) -> dict[str, Any]:
    spec, setting = req.spec, req.setting
    row: dict[str, Any] = {
        "spec": spec.name, "spec_hash": spec.spec_hash(), "primitives": spec.primitives_summary(),
        "mixer": sequence_mixer(spec), "d_model": spec.d_model, "spec_config": spec.config_json(),
        "suite": setting.suite, "task": setting.task, "setting": setting.setting_id,
        "setting_hash": setting.setting_hash(), **setting.variables(),
        "lr": req.training.lr, "weight_decay": req.training.weight_decay, "seed": req.training.seed,
        "epochs": req.training.epochs, "batch_size": req.training.batch_size,
        "device": device_name(device), "version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if result is None:
        row.update(status="failed", error=error, params=None)
    else:
        row.update(result.to_dict())
        row["error"] = error
        row["state_bytes"] = recurrent_state_bytes(spec, setting)
    return row


def recurrent_state_bytes(spec: ArchitectureSpec, setting) -> int | None:
    """Bytes of the model's recurrent state for one sequence at the setting's length (fp32, all
    layers: ``madbench info``'s figure; None where the backbone has no token-by-token form)."""
    from .info import summarize

    ts = setting.task_setting
    try:
        return summarize(spec, ts.model_vocab_size(), ts.seq_len, backbone=ts.backbone)[1].state_bytes
    except (TypeError, ValueError, NotImplementedError):
        return None


def error_line(exc: BaseException) -> str:
    """An exception as the one line a row's ``error`` keeps."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def run_one(req: RunRequest, device: str | None = None, progress=None,
            on_eval=None) -> dict[str, Any]:
    """Train one run; its row. Exceptions inside training become a ``failed`` row."""
    dev = resolve_device(device)
    try:
        result = train(req.spec, req.setting.task_setting, req.training, device=str(dev),
                       progress=progress, on_eval=on_eval)
        return make_row(req, result, dev)
    except Exception as exc:  # noqa: BLE001 - a benchmark must survive one bad run
        return make_row(req, None, dev, error=error_line(exc))
