"""Train one spec on one task setting and score it on the test split.

The plain trainer is the ensemble engine with one member (:mod:`.ensemble`):
one training step (forward, loss, backward, clipping, AdamW on flat buffers, metrics on the
device), one evaluation and one set of per-epoch rules (:mod:`.core`) serve a single run and a
batched lr x weight-decay grid alike. With one member the model runs as itself (no vmap).
A run whose loss turns NaN/inf ends as ``diverged`` with its last metrics instead of raising.
"""
from __future__ import annotations

import time

from ..configs.architecture import ArchitectureSpec
from ..configs.train import TrainConfig
from .core import EvalCallback, RunResult, cosine_lr, resolve_device
from .ensemble import EngineOptions, train_grid

__all__ = ["train", "RunResult", "EvalCallback", "cosine_lr", "resolve_device"]


def train(spec: ArchitectureSpec, setting, cfg: TrainConfig, device: str | None = None,
          on_eval: EvalCallback | None = None, progress=None, data=None,
          options: EngineOptions | None = None) -> RunResult:
    """Train ``spec`` on ``setting`` (a task setting) with ``cfg`` and return its scores.

    ``progress``: an object with ``start(total_steps)``, ``advance(n, **info)`` (e.g. a rich
    progress task wrapper) or None. ``data``: (train, test) TaskData to reuse, else generated.
    ``options``: engine options (CUDA-graph capture, compile); the defaults suit one run.
    """
    t0 = time.perf_counter()
    (result,) = train_grid(spec, setting, [cfg], device=resolve_device(device),
                           progress=progress, data=data, options=options,
                           on_eval=[on_eval] if on_eval is not None else None)
    result.wall_s = time.perf_counter() - t0
    return result
