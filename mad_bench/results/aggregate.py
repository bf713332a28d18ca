"""MAD's aggregation: best grid point per setting, mean over settings per task, mean over tasks.

Every table carries how many runs stand behind each number and whether the grid was
complete, so a partial store is flagged rather than silently averaged.
"""
from __future__ import annotations

import pandas as pd

METRICS = ("test_acc_macro", "test_acc")
SETTING_KEYS = ["spec", "spec_hash", "suite", "task", "setting"]


def _score_column(df: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid (valid: {', '.join(METRICS)})")
    # a diverged or failed run scores 0: it lost that grid point
    return df[metric].where(df["status"] == "ok", 0.0).fillna(0.0).astype(float)


def setting_scores(df: pd.DataFrame, metric: str = "test_acc_macro",
                   grid_size: int | None = None) -> pd.DataFrame:
    """One row per (spec, suite, task, setting): the best grid point, mean over seeds."""
    if df.empty:
        raise ValueError("the results store is empty: run `madbench run` or `madbench bench` first")
    df = df.assign(score=_score_column(df, metric))
    per_seed = (df.groupby(SETTING_KEYS + ["seed"], dropna=False)
                  .agg(best=("score", "max"), grid_points=("score", "size")).reset_index())
    out = (per_seed.groupby(SETTING_KEYS, dropna=False)
                   .agg(score=("best", "mean"), score_std=("best", "std"), n_seeds=("seed", "nunique"),
                        n_runs=("grid_points", "sum"), grid_points=("grid_points", "min"))
                   .reset_index())
    out["score_std"] = out["score_std"].fillna(0.0)
    if grid_size is None:
        grid_size = int(out.groupby(["suite"])["grid_points"].transform("max").max())
    out["grid_complete"] = out["grid_points"] >= grid_size
    return out


def task_scores(settings: pd.DataFrame) -> pd.DataFrame:
    """Mean over settings per (spec, suite, task)."""
    return (settings.groupby(["spec", "spec_hash", "suite", "task"], dropna=False)
                    .agg(score=("score", "mean"), n_settings=("setting", "nunique"),
                         n_runs=("n_runs", "sum"), grid_complete=("grid_complete", "all"))
                    .reset_index())


def mad_scores(tasks: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks per (spec, suite): the MAD score."""
    return (tasks.groupby(["spec", "spec_hash", "suite"], dropna=False)
                 .agg(mad_score=("score", "mean"), n_tasks=("task", "nunique"),
                      n_runs=("n_runs", "sum"), grid_complete=("grid_complete", "all"))
                 .reset_index().sort_values("mad_score", ascending=False, ignore_index=True))
