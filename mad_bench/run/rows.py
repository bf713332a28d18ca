"""A run's result row: every engine and executor builds rows here, so a row has one shape
(the same columns, the same run key) whoever trained it."""
from __future__ import annotations

import platform
import traceback
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..configs.architecture import ArchitectureSpec
from ..train.core import RunResult

if TYPE_CHECKING:
    from .plan import RunRequest


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
    from ..info import summarize

    ts = setting.task_setting
    try:
        return summarize(spec, ts.model_vocab_size(), ts.seq_len, backbone=ts.backbone)[1].state_bytes
    except (TypeError, ValueError, NotImplementedError):
        return None


def error_line(exc: BaseException) -> str:
    """An exception as the one line a row's ``error`` keeps."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()

