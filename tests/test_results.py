"""Results store (atomic, deduplicated rows) and MAD aggregation."""
import os

import pandas as pd
import pytest

from mad_bench.results import ResultsStore, run_key
from mad_bench.results.aggregate import mad_scores, setting_scores, task_scores


def row(spec="a", task="t1", setting="baseline", lr=1e-3, wd=0.0, acc=0.5, status="ok", seed=0):
    return {"spec": spec, "spec_hash": spec + "h", "suite": "s", "task": task, "setting": setting,
            "lr": lr, "weight_decay": wd, "seed": seed, "status": status, "test_acc": acc,
            "test_acc_macro": acc}


def test_store_round_trip_and_dedup(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.load().empty
    k1 = run_key("h", "t1", {"seq_len": 8}, {"lr": 1e-3})
    assert k1 == run_key("h", "t1", {"seq_len": 8}, {"lr": 1e-3})
    assert k1 != run_key("h", "t1", {"seq_len": 8}, {"lr": 5e-4})
    store.write(k1, row(acc=0.25))
    store.write(run_key("h", "t2", {}, {}), row(task="t2"))
    assert store.has(k1)
    frame = store.load()
    assert len(frame) == 2 and set(frame["task"]) == {"t1", "t2"}
    store.write(k1, row(acc=0.75))  # --force: replaces that run's row, keeps the others
    frame = store.load()
    assert len(frame) == 2 and frame.loc[frame["task"] == "t1", "test_acc"].item() == 0.75
    assert not [p for p in os.listdir(tmp_path / "runs") if p.endswith(".tmp")]


def test_store_write_is_atomic(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    store.write("k0", row())

    def boom(self, *a, **k):
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(KeyboardInterrupt):
        store.write("k1", row(task="t9"))
    monkeypatch.undo()
    frame = store.load()
    assert list(frame["run_key"]) == ["k0"]
    assert os.listdir(tmp_path / "runs") == ["k0.parquet"]


def test_unwritable_results_dir(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a dir")
    with pytest.raises(PermissionError, match="not writable"):
        ResultsStore(target).ensure_writable()


def test_mad_aggregation_by_hand():
    rows = [
        # spec a, task t1: setting s1 grid {0.2, 0.6} -> 0.6; s2 {0.4, diverged} -> 0.4; t1 = 0.5
        row("a", "t1", "s1", 1e-3, 0.0, 0.2), row("a", "t1", "s1", 1e-4, 0.0, 0.6),
        row("a", "t1", "s2", 1e-3, 0.0, 0.4), row("a", "t1", "s2", 1e-4, 0.0, 0.99, status="diverged"),
        # spec a, task t2: one setting, best 0.9 -> t2 = 0.9; MAD(a) = 0.7
        row("a", "t2", "s1", 1e-3, 0.0, 0.9), row("a", "t2", "s1", 1e-4, 0.0, 0.1),
        # spec b: only one grid point on t1 -> flagged incomplete
        row("b", "t1", "s1", 1e-3, 0.0, 1.0),
    ]
    frame = pd.DataFrame(rows)
    settings = setting_scores(frame)
    tasks = task_scores(settings)
    mad = mad_scores(tasks)
    a = tasks[tasks["spec"] == "a"].set_index("task")["score"]
    assert a["t1"] == pytest.approx(0.5) and a["t2"] == pytest.approx(0.9)
    scores = mad.set_index("spec")
    assert scores.loc["a", "mad_score"] == pytest.approx(0.7)
    assert scores.loc["a", "grid_complete"] and not scores.loc["b", "grid_complete"]
    assert scores.loc["b", "mad_score"] == pytest.approx(1.0) and list(mad["spec"]) == ["b", "a"]


def test_seeds_average_after_best_grid_point():
    rows = [row("a", "t1", "s1", lr, 0.0, acc, seed=seed)
            for seed, lr, acc in [(0, 1e-3, 0.2), (0, 1e-4, 0.8), (1, 1e-3, 0.6), (1, 1e-4, 0.4)]]
    settings = setting_scores(pd.DataFrame(rows))
    assert settings["score"].item() == pytest.approx(0.7)  # mean(0.8, 0.6)
    assert settings["n_seeds"].item() == 2 and settings["n_runs"].item() == 4


def test_empty_store_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        setting_scores(pd.DataFrame(columns=["spec"]))
