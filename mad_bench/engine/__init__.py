"""Throughput engine: the lr x wd grid of one (spec, setting) trained as one batched ensemble
(vmapped functional model, flat AdamW, device-side data and metrics, whole-step CUDA graphs),
computing the same function as the plain trainer (which is its one-member case). The step
itself lives in :mod:`mad_bench.train.ensemble`; this package runs planned grids through it."""
from ..train.ensemble import Ensemble, EngineInfo, EngineOptions, train_grid
from .execute import group_requests, run_grid_rows

__all__ = ["Ensemble", "EngineInfo", "EngineOptions", "train_grid", "group_requests", "run_grid_rows"]
