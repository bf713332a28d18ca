"""Self-tuning of one spec's training hyperparameters (grid = MAD's protocol, TPE + pruning)."""
import optuna
import yaml

from mad_bench.results.store import ResultsStore
from mad_bench.cli import main

TINY = {"name": "tiny", "d_model": 16, "layers": [{"type": "attention", "n_heads": 2, "rotary_dim": 2},
                                                   {"type": "swiglu", "d_inner": 32}]}


def _study(res, name):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    return optuna.load_study(study_name=name, storage=JournalStorage(
        JournalFileBackend(str(res / name / "journal.log"))))


def test_tune_grid_and_tpe(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "tiny-suite", "training": {"epochs": 3, "batch_size": 16, "stop_at_accuracy": None},
        "grid": {"lr": [1.0e-3, 3.0e-3], "weight_decay": [0.0, 0.1]},
        "tasks": {"in-context-recall": {"baseline": {"vocab_size": 16, "seq_len": 16,
                                                     "num_train_examples": 32, "num_test_examples": 16}}}}))
    res = tmp_path / "res"
    base = ["tune", str(spec), "--task", "in-context-recall", "--suite", str(suite), "--results", str(res),
            "--executor", "local", "--in-process"]
    assert main(base + ["--sampler", "grid", "--study", "g"]) == 0
    g = _study(res, "g")
    points = {(t.params["train.lr"], t.params["train.weight_decay"]) for t in g.trials}
    assert points == {(1e-3, 0.0), (1e-3, 0.1), (3e-3, 0.0), (3e-3, 0.1)}  # the whole grid, once
    assert (res / "g" / "best-training.yaml").is_file()
    rows = ResultsStore(res).load()
    assert len(rows) == 4 and set(rows["study"]) == {"g"}
    # TPE with a median pruner on per-epoch accuracy; unknown sampler is a clear error
    assert main(base + ["--sampler", "tpe", "--trials", "4", "--study", "t", "--pruner", "median"]) == 0
    assert len([t for t in _study(res, "t").trials if t.state.name in ("COMPLETE", "PRUNED")]) == 4
    assert main(base + ["--sampler", "nope", "--trials", "1", "--study", "x"]) == 2
    # an existing study needs --resume; resuming a finished one runs nothing more
    assert main(base + ["--sampler", "grid", "--study", "g"]) == 2
    assert main(base + ["--sampler", "grid", "--study", "g", "--resume"]) == 0
    assert len(_study(res, "g").trials) == 4
