"""`madbench run` / `bench` end to end on the smoke suite, and their input errors."""
from pathlib import Path

import pandas as pd
import pytest

from mad_bench.cli import main
from mad_bench.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMER = str(ROOT / "architectures/transformer.yaml")


def run_cli(*argv):
    return main([*argv, "--no-progress"])


def test_run_writes_one_row_and_skips_a_rerun(tmp_path, capsys):
    args = ["run", TRANSFORMER, "--suite", "smoke", "--task", "in-context-recall", "--results",
            str(tmp_path), "--epochs", "1", "--device", "cpu"]
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "status=ok" in out and "test_acc=" in out
    frame = ResultsStore(tmp_path).load()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["spec"] == "transformer" and row["task"] == "in-context-recall"
    assert row["setting"] == "baseline" and row["epochs_run"] == 1 and row["status"] == "ok"
    assert 0.0 <= row["test_acc"] <= 1.0 and row["params"] > 0
    for col in ("spec_hash", "primitives", "suite", "vocab_size", "seq_len", "num_train_examples",
                "lr", "weight_decay", "seed", "test_acc_macro", "test_loss", "train_acc", "wall_s",
                "device", "version", "created_at"):
        assert col in frame.columns, col
    assert run_cli(*args) == 0
    assert "1 run(s) skipped" in capsys.readouterr().out
    assert len(ResultsStore(tmp_path).load()) == 1
    assert run_cli(*args, "--force") == 0
    assert len(ResultsStore(tmp_path).load()) == 1


def test_bench_prints_scores(tmp_path, capsys):
    assert run_cli("bench", TRANSFORMER, "--suite", "smoke", "--tasks", "compression", "memorization",
                   "--results", str(tmp_path), "--epochs", "1", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "2 setting(s)" in out and "MAD score" in out and "compression" in out
    assert len(ResultsStore(tmp_path).load()) == 2


@pytest.mark.parametrize("argv, message", [
    (["--task", "in-context-recal"], "did you mean 'in-context-recall'"),
    (["--task", "in-context-recall", "--set", "seq_lenn=4"], "did you mean 'seq_len'"),
    (["--task", "compression", "--spec-backbone-lm"], "backbone 'lm' but task 'compression' needs 'autoencoder'"),
    (["--task", "in-context-recall", "--suite", "nope"], "unknown suite 'nope'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    spec = TRANSFORMER
    if "--spec-backbone-lm" in argv:
        argv = [a for a in argv if a != "--spec-backbone-lm"]
        spec = tmp_path / "lm.yaml"
        spec.write_text("name: lm-only\nbackbone: lm\nlayers: [swiglu]\n")
    results = tmp_path / "results"
    assert run_cli("run", str(spec), "--suite", "smoke", "--results", str(results), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.lower() in err[0].lower(), err
    assert not results.exists()


def test_unwritable_results_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_cli("run", TRANSFORMER, "--suite", "smoke", "--task", "compression",
                   "--results", str(blocker), "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "Traceback" not in err


SMALL_SPEC = "name: small\nd_model: 32\nlayers: [{type: attention, n_heads: 4}, swiglu]\n"


def bench_frames(tmp_path, suite, runs):
    """Bench the small spec on ``suite`` once per (name, argv) of ``runs``; their stores."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL_SPEC)
    frames = {}
    for name, argv in runs:
        out = tmp_path / name
        assert run_cli("bench", str(spec), "--suite", str(suite), "--results", str(out),
                       "--device", "cpu", *argv) == 0
        frames[name] = ResultsStore(out).load().sort_values("run_key").reset_index(drop=True)
    return frames


def assert_same_runs(frames):
    """Same rows (keys, columns, statuses) and the same accuracies up to fp32 rounding."""
    names = list(frames)
    ref = frames[names[0]]
    assert len(ref) == 2 and set(ref["status"]) == {"ok"}
    for name in names[1:]:
        other = frames[name]
        assert list(other["run_key"]) == list(ref["run_key"]), name
        assert list(other.columns) == list(ref.columns), name
        assert (other["test_acc"] - ref["test_acc"]).abs().max() < 1e-4, name
        assert (other["test_loss"] - ref["test_loss"]).abs().max() < 1e-4, name


def test_bench_engines_and_local_workers_give_the_same_rows(tmp_path, two_lr_suite):
    """Plain and ensemble engine, in this process and on two local worker processes."""
    assert_same_runs(bench_frames(tmp_path, two_lr_suite, [
        ("plain", ["--engine", "plain"]), ("ensemble", ["--engine", "ensemble"]),
        ("plain-2", ["--engine", "plain", "--workers", "2"]),
        ("ensemble-2", ["--engine", "ensemble", "--workers", "2"])]))


def test_killed_bench_resumes_where_it_stopped(tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    suite, spec = tmp_path / "four.yaml", tmp_path / "small.yaml"
    suite.write_text(
        "name: four\ntraining: {epochs: 6, batch_size: 16, stop_at_accuracy: null}\n"
        "grid: {lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3], weight_decay: [0.0]}\n"
        "tasks:\n  in-context-recall:\n    baseline: {vocab_size: 8, seq_len: 16,"
        " num_train_examples: 64, num_test_examples: 16}\n")
    spec.write_text(SMALL_SPEC)
    results = tmp_path / "r"
    argv = ["bench", str(spec), "--suite", str(suite), "--results", str(results), "--device", "cpu"]
    driver = subprocess.Popen([sys.executable, "-m", "mad_bench.cli", *argv, "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ResultsStore(results)
    deadline = time.time() + 120
    while len(list(store.runs.glob("*.parquet")) if store.runs.is_dir() else []) < 1 and time.time() < deadline:
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = len(store.load())
    assert 1 <= done < 4, "the kill did not land mid-bench"
    # a SIGKILL mid-write may leave a temporary file: never a row, and every row file is whole
    assert all(not p.name.endswith(".parquet") for p in store.runs.glob(".*.tmp"))
    for p in store.runs.glob("*.parquet"):
        assert len(pd.read_parquet(p)) == 1
    assert run_cli(*argv) == 0
    assert f"{done} run(s) already in" in capsys.readouterr().out
    frame = store.load()
    assert len(frame) == 4 and frame["run_key"].is_unique and set(frame["status"]) == {"ok"}


def test_bench_workers_end_when_the_driver_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    suite = tmp_path / "slow.yaml"
    suite.write_text(
        "name: slow\ntraining: {epochs: 500, batch_size: 8, stop_at_accuracy: null}\n"
        "grid: {lr: [1.0e-3, 2.0e-3], weight_decay: [0.0]}\n"
        "tasks:\n  in-context-recall:\n    baseline: {vocab_size: 8, seq_len: 16,"
        " num_train_examples: 64, num_test_examples: 16}\n")
    driver = subprocess.Popen([sys.executable, "-m", "mad_bench.cli", "bench", TRANSFORMER,
                               "--suite", str(suite), "--results", str(tmp_path / "r"),
                               "--workers", "2", "--device", "cpu", "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children():
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(driver.pid)], capture_output=True,
                             text=True).stdout.split()
        return [int(p) for p in out]

    deadline = time.time() + 60
    while len(children()) < 2 and time.time() < deadline:
        time.sleep(0.5)
    workers = children()
    assert workers, "no worker processes started"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 20
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and
                 "zombie" not in open(f"/proc/{p}/status").read().lower()]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "workers outlived the killed driver"


def test_failed_run_is_retried_diverged_run_is_kept(tmp_path, capsys):
    """A stored failed run is no result: the same run again retries it (and says so); a
    diverged run is a result and stays."""
    args = ["run", TRANSFORMER, "--suite", "smoke", "--task", "memorization", "--results",
            str(tmp_path), "--epochs", "1", "--device", "cpu"]
    assert run_cli(*args) == 0
    store = ResultsStore(tmp_path)
    row = store.load().iloc[0].to_dict()
    key = row.pop("run_key")
    store.write(key, {**row, "status": "failed", "error": "RuntimeError: no such device"})
    capsys.readouterr()
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "retrying 1 run(s) stored as failed" in out and "status=ok" in out and "skipped" not in out
    assert store.status(key) == "ok" and len(store.load()) == 1
    store.write(key, {**row, "status": "diverged"})
    assert run_cli(*args) == 0
    assert "1 run(s) skipped" in capsys.readouterr().out
    assert store.status(key) == "diverged"


def test_progress_lines_name_their_metric_and_are_not_cut(tmp_path):
    """Not on a terminal: the overall line names the table's metric, the run line test_acc,
    and nothing is cut at 80 columns."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mad_bench.cli", "run", TRANSFORMER, "--suite", "smoke",
                           "--task", "memorization", "--results", str(tmp_path), "--epochs", "1",
                           "--device", "cpu"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    overall = next(line for line in lines if line.startswith("run transformer"))
    assert "last: memorization ok test_acc_macro=" in overall and "…" not in overall
    per_run = next(line for line in lines if line.startswith("transformer | memorization"))
    assert "test_acc=" in per_run and "test_loss=" in per_run and "epoch=1" in per_run


# The run keys and the row's columns as the code before the run layer wrote them (its
# runner.plan + runs.run_one, for this spec, setting, grid and seed): stored rows stay findable
# (a rerun skips them) and comparable with new ones.
KEYS_BEFORE = ["c14927904332c44900f1", "6a8d29ca581814426d14"]
COLUMNS_BEFORE = [
    "spec", "spec_hash", "primitives", "mixer", "d_model", "spec_config", "suite", "task", "setting",
    "setting_hash", "vocab_size", "seq_len", "num_train_examples", "num_test_examples", "lr",
    "weight_decay", "seed", "epochs", "batch_size", "device", "version", "created_at", "status",
    "stop_reason", "test_acc", "test_acc_macro", "test_loss", "train_acc", "train_loss", "epochs_run",
    "best_epoch", "params", "wall_s", "setup_s", "error", "state_bytes"]


@pytest.mark.parametrize("engine", ["plain", "ensemble"])
def test_the_run_layer_writes_the_rows_and_keys_of_before(tmp_path, engine):
    from mad_bench import load_spec
    from mad_bench.run.driver import run_plan
    from mad_bench.run.options import ExecOptions
    from mad_bench.run.plan import plan, requests_of
    from mad_bench.suite import expand, load_suite

    settings = expand(load_suite("smoke"), ["in-context-recall"], train_overrides={"epochs": 1},
                      baseline_only=True)
    spec = load_spec({"name": "tiny", "d_model": 16, "layers": [
        {"type": "attention", "n_heads": 2, "rotary_dim": 0}, "swiglu"]})
    grids = plan([spec], settings, lrs=[1e-3, 5e-4], wds=[0.0, 0.1], seeds=[7])
    by_point = {(r.training.lr, r.training.weight_decay): r.key for r in requests_of(grids)}
    assert [by_point[(1e-3, 0.0)], by_point[(5e-4, 0.1)]] == KEYS_BEFORE
    store = ResultsStore(tmp_path)
    rows, skipped = run_plan(grids, store, ExecOptions(device="cpu", engine=engine))
    assert skipped == 0 and len(rows) == 4
    assert all(list(row) == COLUMNS_BEFORE for row in rows)
    assert all(store.has_result(key) for key in KEYS_BEFORE)
