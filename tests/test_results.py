"""Results store (atomic, deduplicated rows) and MAD aggregation."""
import os

import pandas as pd
import pytest

from mad_bench.results import ResultsStore, run_key
from mad_bench.results.aggregate import mad_score, mad_scores, row_score, setting_scores, task_scores


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


def test_mad_score_by_hand_with_seeds_and_a_partial_grid(tmp_path):
    """One spec, two tasks, two seeds, a 2-point grid with holes: every reader gets the number
    worked out here by hand."""
    rows = [
        # t1/s1: seed 0 best of {0.2, 0.8} = 0.8; seed 1 best of {0.6, failed} = 0.6 -> 0.7
        # (a failed run is no score: seed 1 has one grid point, so the grid is partial)
        row("a", "t1", "s1", 1e-3, 0.0, 0.2, seed=0), row("a", "t1", "s1", 1e-4, 0.0, 0.8, seed=0),
        row("a", "t1", "s1", 1e-3, 0.0, 0.6, seed=1), row("a", "t1", "s1", 1e-4, 0.0, None, "failed", seed=1),
        # t1/s2: seed 0 only one grid point (partial) 0.3; seed 1 best of {0.1, 0.5} = 0.5 -> 0.4
        row("a", "t1", "s2", 1e-3, 0.0, 0.3, seed=0),
        row("a", "t1", "s2", 1e-3, 0.0, 0.1, seed=1), row("a", "t1", "s2", 1e-4, 0.0, 0.5, seed=1),
        # t1 = mean(0.7, 0.4) = 0.55
        # t2/s1: seed 0 best of {pruned 0.95, 0.9} = 0.9; seed 1 best of {diverged 1.0, 0.0} = 0 -> 0.45
        row("a", "t2", "s1", 1e-3, 0.0, 0.95, "pruned", seed=0), row("a", "t2", "s1", 1e-4, 0.0, 0.9, seed=0),
        row("a", "t2", "s1", 1e-3, 0.0, 1.0, "diverged", seed=1), row("a", "t2", "s1", 1e-4, 0.0, 0.0, seed=1),
        # t2 = 0.45; MAD = mean(0.55, 0.45) = 0.5 (a max over rows with seeds pooled would say 0.725)
    ]
    expected = 0.5
    assert mad_score(rows) == pytest.approx(expected)
    assert mad_score(pd.DataFrame(rows)) == pytest.approx(expected)
    settings = setting_scores(pd.DataFrame(rows)).set_index(["task", "setting"])
    assert settings.loc[("t1", "s2"), "score"] == pytest.approx(0.4)
    assert not settings.loc[("t1", "s2"), "grid_complete"] and not settings.loc[("t1", "s1"), "grid_complete"]
    assert settings.loc[("t2", "s1"), "grid_complete"]  # pruned and diverged runs are results
    assert mad_score([]) == 0.0
    assert row_score(rows[1]) == 0.8 and row_score(rows[3]) == 0.0 and row_score(rows[7]) == row_score(rows[9]) == 0.0
    with pytest.raises(ValueError, match="one spec"):
        mad_score(rows + [row("b", "t1", "s1")])
    # the leaderboard's MAD cell is the same number
    from mad_bench.results.leaderboard import MAD_COLUMN, build_leaderboard

    lb = build_leaderboard(pd.DataFrame(rows))
    assert lb.cell("ah", MAD_COLUMN)["score"] == pytest.approx(expected)


def test_store_read_gives_one_rows_plain_values(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.read("nope") is None
    store.write("k", row(acc=0.25))
    got = store.read("k")
    assert got["test_acc"] == 0.25 and type(got["seed"]) is int and "run_key" not in got
    (tmp_path / "runs" / "bad.parquet").write_bytes(b"not parquet")
    assert store.read("bad") is None
