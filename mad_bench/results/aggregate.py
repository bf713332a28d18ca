"""MAD's aggregation: best grid point per setting, mean over settings per task, mean over tasks.

Every table carries how many runs stand behind each number and whether the grid was
complete, so a partial store is flagged rather than silently averaged. A failed run (a crash,
no result) is not a score: it is left out, as if it had not run, and counted apart
(``failed_runs``); a diverged run is a result and scores 0 at its grid point.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported by whoever hands in a frame; `madbench --help` skips it
    import pandas as pd

METRICS = ("test_acc_macro", "test_acc")
SETTING_KEYS = ["spec", "spec_hash", "suite", "task", "setting"]


def scored_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that carry a result: all but failed runs."""
    return df[df["status"] != "failed"]


def failed_runs(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Number of failed runs per ``keys`` (a ``failed`` column), groups without any left out."""
    failed = df[df["status"] == "failed"]
    return failed.groupby(keys, dropna=False).size().rename("failed").reset_index()


def _score_column(df: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid (valid: {', '.join(METRICS)})")
    # a diverged run scores 0: it lost that grid point (failed runs are left out before this)
    return df[metric].where(df["status"] == "ok", 0.0).fillna(0.0).astype(float)


def setting_scores(df: pd.DataFrame, metric: str = "test_acc_macro",
                   grid_size: int | None = None) -> pd.DataFrame:
    """One row per (spec, suite, task, setting): the best grid point, mean over seeds."""
    if df.empty:
        raise ValueError("the results store is empty: run `madbench run` or `madbench bench` first")
    df = scored_runs(df)
    df = df.assign(score=_score_column(df, metric))
    per_seed = (df.groupby(SETTING_KEYS + ["seed"], dropna=False)
                  .agg(best=("score", "max"), grid_points=("score", "size")).reset_index())
    out = (per_seed.groupby(SETTING_KEYS, dropna=False)
                   .agg(score=("best", "mean"), score_std=("best", "std"), n_seeds=("seed", "nunique"),
                        n_runs=("grid_points", "sum"), grid_points=("grid_points", "min"))
                   .reset_index())
    out["score_std"] = out["score_std"].fillna(0.0)
    if grid_size is None:
        grid_size = int(out["grid_points"].max()) if len(out) else 0
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
