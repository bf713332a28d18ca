"""The MAD score, computed here only: best grid point per (setting, seed), mean over seeds,
mean over settings per task, mean over tasks.

A failed run (a crash, no result) is not a score: it is left out, as if it had not run, and
counted apart (``failed_runs``); a diverged or pruned run is a result and scores 0 at its grid
point. ``setting_scores`` -> ``task_scores`` -> ``mad_scores`` are the tables (every one carries
how many runs stand behind each number and whether the grid was complete, so a partial store is
flagged rather than silently averaged); ``mad_score(rows)`` is the one number of one spec's
rows (a search trial's objective), through the same tables; ``row_score`` is one run's score.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

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


def run_scores(df: pd.DataFrame, metric: str = "test_acc_macro") -> pd.Series:
    """Each run's score: its ``metric`` if its status is ok, else 0 (give it scored runs)."""
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
    df = df.assign(score=run_scores(df, metric))
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


def row_score(row: dict[str, Any], metric: str = "test_acc_macro") -> float:
    """One run's score (:func:`run_scores` of a single row)."""
    import pandas as pd

    one = pd.DataFrame([{metric: row.get(metric), "status": row.get("status")}])
    return float(run_scores(one, metric).iloc[0])


def mad_score(rows: Iterable[dict[str, Any]] | pd.DataFrame, metric: str = "test_acc_macro") -> float:
    """The MAD score of one spec's rows on one suite (0 with no scored rows)."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty or scored_runs(df).empty:
        return 0.0
    mad = mad_scores(task_scores(setting_scores(df, metric=metric)))
    if len(mad) != 1:
        raise ValueError(f"mad_score: the rows hold {len(mad)} (spec, suite) pairs; give one spec's rows")
    return float(mad["mad_score"].iloc[0])
