"""Architecture search: spaces, invalid samples, worker death, driver death + --resume."""
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from mad_bench.results.store import ResultsStore
from mad_bench.configs.errors import SpecError
from mad_bench.tune.space import load_space
from mad_bench.cli import main

TINY = {"name": "tiny", "d_model": 16, "layers": [{"type": "attention", "n_heads": 2, "rotary_dim": 2},
                                                   {"type": "swiglu", "d_inner": 32}]}


def write_space(tmp_path, **extra) -> str:
    space = {"name": "tiny-space", "base": TINY,
             "slots": [{"index": 0, "choices": ["attention", "short-conv"],
                        "params": {"attention": {"n_heads": [1, 2, 4]}}}],
             "scoring": {"mode": "fixed"}, **extra}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def search(tmp_path, space, *extra) -> list[str]:
    return ["search", space, "--suite", "smoke", "--tasks", "in-context-recall", "--epochs", "1",
            "--results", str(tmp_path / "res"), "--study", "s", *extra]


def load(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "res" / "s" / "journal.log")))
    return optuna.load_study(study_name="s", storage=storage)


@pytest.mark.parametrize("name", ["mixer-per-slot", "striped-hybrid", "width-depth", "lr-wd"])
def test_shipped_spaces_load(name):
    assert load_space(name).name == name


def test_invalid_space_has_field_path(tmp_path):
    bad = {"name": "x", "base": TINY, "slots": [{"index": 0, "choices": ["attention", "mamab"]}]}
    with pytest.raises(SpecError) as exc:
        load_space(bad)
    assert "slots[0].choices[1]" in str(exc.value) and "mamba" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        load_space({"name": "x", "base": TINY, "training": {"lr": {"low": 0, "high": 1, "log": True}}})
    assert "training.lr" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        load_space({"name": "x", "base": TINY, "slots": [{"index": 5, "choices": ["attention"]}]})
    assert "slots[0].index" in str(exc.value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(search(tmp_path, str(path), "--trials", "1")) == 2


def test_unknown_objective_and_bad_storage(tmp_path, capsys):
    space = write_space(tmp_path)
    assert main(search(tmp_path, space, "--objectives", "mad_score,speed")) == 2
    assert "unknown objective 'speed'" in capsys.readouterr().err
    assert main(search(tmp_path, space, "--storage", "sqlite:////no/such/dir/x.db", "--executor", "local")) == 2
    assert "cannot open Optuna storage" in capsys.readouterr().err
    assert main(search(tmp_path, space, "--storage", "nosuchdb://x", "--executor", "local")) == 2
    assert "cannot open Optuna storage" in capsys.readouterr().err


def test_invalid_samples_pruned_with_reason(tmp_path):
    # width 12 with 8 heads cannot work; width 16 with 4 heads is over a tiny parameter budget
    space = write_space(tmp_path, d_model=[12], params={"attention": {"n_heads": [8]}},
                        slots=[], constraints={"max_params": 10})
    assert main(search(tmp_path, space, "--trials", "2", "--executor", "local", "--in-process")) == 0
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert "must divide" in trials[0].user_attrs["prune_reason"]
    space = write_space(tmp_path, constraints={"max_params": 10})
    assert main(search(tmp_path, space, "--trials", "1", "--executor", "local", "--in-process",
                       "--study", "s2")) == 0


def test_worker_killed_is_retried_then_failed(tmp_path, monkeypatch):
    space = write_space(tmp_path)
    monkeypatch.setenv("MADBENCH_FAULT_KILL_TRIALS", "0")
    monkeypatch.setenv("MADBENCH_FAULT_KILL_ATTEMPTS", "9")  # trial 0 always dies
    monkeypatch.setenv("MADBENCH_FAULT_KILL_TRIALS", "0,1")
    args = search(tmp_path, space, "--trials", "3", "--executor", "local", "--parallel", "2",
                  "--max-retries", "1", "--sampler", "random")
    monkeypatch.setenv("MADBENCH_FAULT_KILL_ATTEMPTS", "1")  # first attempt of trials 0, 1 dies
    assert main(args) == 0
    trials = load(tmp_path).trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    assert [t.user_attrs["attempts"] for t in trials[:2]] == [2, 2]
    # always dying -> recorded failed with the reason; the search goes on
    monkeypatch.setenv("MADBENCH_FAULT_KILL_ATTEMPTS", "9")
    monkeypatch.setenv("MADBENCH_FAULT_KILL_TRIALS", "3")
    assert main(args[:-6] + ["--trials", "5", "--executor", "local", "--max-retries", "1",
                             "--sampler", "random", "--resume"]) == 0
    trials = load(tmp_path).trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "SIGKILL" in failed[0].user_attrs["fail_reason"]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4
    rows = ResultsStore(tmp_path / "res").load()
    assert set(failed[0].user_attrs["run_keys"]) <= set(rows["run_key"])  # a row for every run


def test_driver_killed_then_resume(tmp_path):
    TRIALS = 16  # enough that a fast machine cannot finish them all before the kill lands
    space = write_space(tmp_path, d_model=[16, 32, 48])
    cmd = [sys.executable, "-m", "mad_bench.cli"] + search(
        tmp_path, space, "--trials", str(TRIALS), "--executor", "local", "--in-process",
        "--sampler", "random")
    journal = tmp_path / "res" / "s" / "journal.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if journal.exists():
                try:
                    if sum(t.state.name == "COMPLETE" for t in load(tmp_path).trials) >= 2:
                        break
                except KeyError:  # the study is not created yet
                    pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: t for t in load(tmp_path).trials if t.state.name == "COMPLETE"}
    assert 2 <= len(before) < TRIALS
    rows_before = ResultsStore(tmp_path / "res").load().set_index("run_key")
    out = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    trials = load(tmp_path).trials
    done = [t for t in trials if t.state.name == "COMPLETE"]
    stale = [t for t in trials if t.user_attrs.get("stale")]
    assert len(done) == TRIALS
    # finished trials were not re-run: same values, their rows untouched
    for n, t in before.items():
        assert trials[n].values == t.values
    rows = ResultsStore(tmp_path / "res").load()
    assert rows["run_key"].is_unique
    for key in rows_before.index:
        assert rows.set_index("run_key").loc[key, "created_at"] == rows_before.loc[key, "created_at"]
    for t in done:
        assert set(t.user_attrs["run_keys"]) <= set(rows["run_key"])
    requeued = {t.user_attrs.get("requeued_from") for t in trials} - {None}
    assert requeued == {t.number for t in stale}


def test_search_and_tune_through_the_ensemble_engine(tmp_path, two_lr_suite):
    """A grid-scored search trial trains its lr x wd grid as one ensemble: same rows and
    score as through the plain trainer; tune runs its trials through the engine too."""
    suite = two_lr_suite
    space = write_space(tmp_path, slots=[], scoring={"mode": "grid"})
    frames, scores = {}, {}
    for engine in ("plain", "ensemble"):
        res = tmp_path / engine
        assert main(["search", space, "--suite", str(suite), "--results", str(res), "--study", "s",
                     "--trials", "1", "--in-process", "--engine", engine]) == 0
        frames[engine] = ResultsStore(res).load().set_index("run_key").sort_index()
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        study = optuna.load_study(study_name="s", storage=JournalStorage(
            JournalFileBackend(str(res / "s" / "journal.log"))))
        scores[engine] = study.trials[0].value
    plain, ens = frames["plain"], frames["ensemble"]
    assert len(plain) == 2 and list(plain.index) == list(ens.index)
    assert (plain["test_acc"] - ens["test_acc"]).abs().max() < 1e-4
    assert scores["ensemble"] == pytest.approx(scores["plain"], abs=1e-4)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["tune", str(spec), "--task", "in-context-recall", "--suite", str(suite), "--results",
                 str(tmp_path / "tune"), "--study", "t", "--sampler", "grid", "--in-process",
                 "--engine", "ensemble"]) == 0
    tuned = ResultsStore(tmp_path / "tune").load().set_index("run_key").sort_index()
    assert list(tuned.index) == list(plain.index)  # the same runs, one per trial
    assert (tuned["test_acc"] - plain["test_acc"]).abs().max() < 1e-4


@pytest.mark.parametrize("storage", ["default", "journal-file", "sqlite"])
def test_every_storage_kind_runs_and_resumes(tmp_path, storage, capsys):
    """Search end to end on each kind of --storage, then --resume: the study's folder (trials.csv,
    best specs) is made for an RDB storage too. No --executor: local is the default."""
    space = write_space(tmp_path)
    extra = {"default": [], "journal-file": ["--storage", str(tmp_path / "elsewhere" / "j.log")],
             "sqlite": ["--storage", f"sqlite:///{tmp_path / 's.db'}"]}[storage]
    args = search(tmp_path, space, "--in-process", "--sampler", "random", *extra)
    assert main(args + ["--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "local (" in out, "the default executor is local"
    assert main(args + ["--trials", "2", "--resume"]) == 0
    study_dir = tmp_path / "res" / "s"
    trials = (study_dir / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and all(",complete," in line for line in trials[1:])
    assert list(study_dir.glob("*.yaml")), "best spec written"
    assert (study_dir / "journal.log").exists() == (storage == "default")
    assert len(ResultsStore(tmp_path / "res").load()) >= 1  # the two trials may sample one spec
