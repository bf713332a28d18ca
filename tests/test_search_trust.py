"""Search and tune a user can trust: a crashed trial is a failure (never a 0 that can win), the
default journal storage is read by plot / report, and --resume keeps the study's target."""
import json

import optuna
import pytest
import yaml

from mad_bench.cli import main
from mad_bench.primitives.sequence.short_conv import ShortConv

from test_search import TINY, load, search, write_space


@pytest.fixture
def crashing_short_conv(monkeypatch):
    """short-conv raises in its forward, as a Triton kernel does on a machine that cannot run it."""
    def boom(self, x):
        raise RuntimeError("kernel cannot run here")
    monkeypatch.setattr(ShortConv, "forward", boom)


def test_crashed_trial_is_a_failure_never_on_the_front(tmp_path, crashing_short_conv, capsys):
    space = write_space(tmp_path, slots=[{"index": 0, "choices": ["short-conv"]}])
    args = search(tmp_path, space, "--trials", "2", "--in-process", "--sampler", "nsga2",
                  "--objectives", "mad_score,params")
    assert main(args) == 0
    out = capsys.readouterr().out
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert "kernel cannot run here" in trials[0].user_attrs["fail_reason"]
    assert "mad_score=0" not in out and "trial 0: failed:" in out and "Pareto front:" not in out
    assert not list((tmp_path / "res" / "s").glob("pareto-*.yaml"))
    import pandas as pd
    frame = pd.read_csv(tmp_path / "res" / "s" / "trials.csv")
    assert frame["mad_score"].isna().all() and frame["reason"].str.contains("kernel cannot run").all()


def test_tune_on_a_crashing_spec_writes_no_best(tmp_path, crashing_short_conv, capsys):
    spec = tmp_path / "sc.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "layers": [{"type": "short-conv"}, {"type": "swiglu", "d_inner": 32}]}))
    assert main(["tune", str(spec), "--task", "in-context-recall", "--suite", "smoke", "--epochs", "1",
                 "--results", str(tmp_path / "res"), "--study", "s", "--trials", "1", "--in-process"]) == 0
    out = capsys.readouterr().out
    assert load(tmp_path).trials[0].state.name == "FAIL"
    assert "complete" not in out.split("study s:")[0] and "best:" not in out
    assert not (tmp_path / "res" / "s" / "best-training.yaml").exists()


def test_resume_keeps_the_target_and_plot_reads_the_default_journal(tmp_path, capsys):
    space = write_space(tmp_path, slots=[], d_model=[16])
    args = search(tmp_path, space, "--in-process", "--sampler", "random")
    assert main(args + ["--trials", "2"]) == 0
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0  # done: a finished 2-trial study stays at 2
    assert len(load(tmp_path).trials) == 2
    assert "2 trial(s)" in capsys.readouterr().out
    assert main(args + ["--resume", "--trials", "3"]) == 0  # --trials given: the new target
    assert len(load(tmp_path).trials) == 3 and load(tmp_path).user_attrs["n_trials"] == 3
    # the history plot and the report find results/<study>/journal.log from --study alone
    res = str(tmp_path / "res")
    png = tmp_path / "h.png"
    assert main(["plot", "--kind", "search-history", "--study", "s", "--results", res, "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    journal = str(tmp_path / "res" / "s" / "journal.log")
    assert main(["plot", "--kind", "search-history", "--study", "s", "--storage", journal,
                 "--results", res, "--out", str(png)]) == 0
    html = tmp_path / "r.html"
    assert main(["report", "--results", res, "--study", "s", "--out", str(html)]) == 0
    assert "Search history: s" in html.read_text()
    capsys.readouterr()
    assert main(["plot", "--kind", "search-history", "--study", "nope", "--results", res]) == 2
    assert "no such journal file" in capsys.readouterr().err
    assert not (tmp_path / "res" / "nope").exists()  # a reader makes no empty journal


def test_history_axis_names_the_objective(tmp_path):
    from mad_bench.results.plots import search_history

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("config", {"objectives": ["mad_score", "params"]})
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0]))
    fig = search_history(study)
    assert [ax.get_ylabel() for ax in fig.axes] == ["mad_score", "params"]


def test_ctrl_c_during_bench_is_one_line_and_exit_130(tmp_path):
    """SIGINT once a first row has landed: one line saying what landed and how to go on, exit
    130, no traceback and no C++ abort from the training thread; the landed rows stay."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "mad_bench.cli", "bench", str(spec), "--suite", "smoke", "--tasks",
           "compression", "--epochs", "1", "--seeds", *map(str, range(200)), "--results", str(res),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not glob.glob(str(res / "runs" / "*.parquet")):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "terminate called" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted:") and "run the same command" in lines[0]
    from mad_bench.results.store import ResultsStore
    assert len(ResultsStore(res).load()) >= 1


def test_ctrl_c_during_search_names_the_study_and_resume(tmp_path, monkeypatch, capsys):
    import mad_bench.tune.study as study_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(study_mod, "drive", interrupted)
    assert main(search(tmp_path, write_space(tmp_path), "--trials", "3", "--in-process")) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted: study s has 0 of 3 trial(s) finished") and "--resume" in err
    assert "\n" not in err


def test_a_run_that_stopped_early_ends_its_bar(tmp_path):
    from mad_bench.progress import RunBar, make_progress

    with make_progress(enabled=False) as progress:
        bar = RunBar(progress, "run")
        bar.start(10)
        bar.advance(4)
        bar.finish("reached stop_at_accuracy")
        (task,) = progress.tasks
        assert task.finished and task.completed == task.total == 4 and task.stop_time is not None
        assert "reached stop_at_accuracy" in task.fields["info"]


def test_address_alone_on_bench_means_ray(tmp_path, monkeypatch, capsys):
    import mad_bench.run.executors as ex

    seen = {}

    def fake(options, **kw):
        seen["kind"] = options.executor_kind
        raise ValueError("stop here")
    monkeypatch.setattr(ex, "make_executor", fake)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    args = ["bench", str(spec), "--suite", "smoke", "--tasks", "compression", "--results", str(tmp_path / "r")]
    assert main(args + ["--address", "127.0.0.1:1"]) == 2 and seen["kind"] == "ray"
    capsys.readouterr()
    assert main(args + ["--address", "127.0.0.1:1", "--executor", "local"]) == 2
    out = capsys.readouterr()
    assert "--executor ray" in out.err and "run(s)" not in out.out  # said before the plan


def _row(spec, primitives, acc, suite="smoke", task="in-context-recall", setting="baseline", **extra):
    return {"spec": spec, "spec_hash": spec + "-h", "primitives": primitives, "params": 100,
            "suite": suite, "task": task, "setting": setting, "vocab_size": 16, "seq_len": 16,
            "num_train_examples": 64, "num_test_examples": 32, "lr": 1e-3, "weight_decay": 0.0,
            "seed": 0, "status": "ok", "test_acc": acc, "test_acc_macro": acc,
            "created_at": "2026-01-01T00:00:00+00:00", **extra}


def test_rows_of_a_changed_setting_are_left_out_with_a_note():
    import pandas as pd
    from mad_bench.results.leaderboard import build_leaderboard

    # smoke's in-context-recall baseline is vocab 16, seq 16 today; 'old' was made at seq 48
    frame = pd.DataFrame([_row("new", "attention+swiglu x2", 0.5),
                          _row("old", "short-conv+swiglu x2", 0.9, seq_len=48)])
    lb = build_leaderboard(frame, by="task")
    assert list(lb.info["spec"]) == ["new"]
    assert len(lb.notes) == 1 and "seq_len 48 -> 16" in lb.notes[0] and "1 row(s)" in lb.notes[0]
    assert "seq_len 48 -> 16" in lb.render("md") and "seq_len 48" in json.loads(lb.render("json"))["notes"][0]
    # a suite that does not load by name: the newest setting_hash of a setting wins
    frame = pd.DataFrame([_row("a", "attention", 0.5, suite="mine", setting_hash="h1"),
                          _row("b", "attention", 0.7, suite="mine", setting_hash="h2",
                               created_at="2026-02-01T00:00:00+00:00")])
    assert list(build_leaderboard(frame).info["spec"]) == ["b"]


def test_rows_carry_their_setting_hash():
    from mad_bench.suite import expand, load_suite

    a, b = expand(load_suite("smoke"), tasks=["in-context-recall"])[:1] * 2
    c = expand(load_suite("smoke"), tasks=["in-context-recall"], overrides={"seq_len": 32})[0]
    assert a.setting_hash() == b.setting_hash() != c.setting_hash()


def test_by_primitive_derives_the_mixer_of_rows_without_the_column():
    import pandas as pd
    from mad_bench.results.leaderboard import build_leaderboard

    frame = pd.DataFrame([_row("t", "attention+swiglu x2", 0.9), _row("s", "short-conv+swiglu x2", 0.4),
                          _row("m", "swiglu x4", 0.1)])
    lb = build_leaderboard(frame, by="primitive")
    assert list(lb.info["mixer"]) == ["attention", "short-conv", "(none)"] and not lb.notes


def test_failed_only_heatmap_cell_is_marked(tmp_path):
    import pandas as pd
    from mad_bench.results.plots import heatmap

    frame = pd.DataFrame([_row("ok", "attention", 0.9),
                          {**_row("bad", "short-conv", float("nan")), "status": "failed", "error": "x"}])
    fig = heatmap(frame)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    assert "✗1" in texts and any("only failed runs" in t for t in texts)
    assert not any(t.startswith("*") for t in texts)


def test_bench_legend_keeps_brackets(capsys):
    import pandas as pd
    from mad_bench.cli import _print_scores

    frame = pd.DataFrame([_row("a", "attention", 0.9),
                          _row("b", "attention", 0.5, task="compression", vocab_size=16, seq_len=8)])
    _print_scores(frame, "smoke", "test_acc_macro")
    assert "[n] runs behind the cell" in capsys.readouterr().out


def test_small_things_a_user_sees(capsys):
    import subprocess
    import sys
    from pathlib import Path

    from mad_bench.cli import build_parser

    # an option the command lacks points to that command's help, with what to do instead
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["tune", "x.yaml", "--task", "compression", "--lr", "-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "`madbench tune --help`" in err and "--space" in err
    # help shows what --trials, --population and report --out default to / are
    sub = build_parser()._subparsers._group_actions[0].choices
    helps = {(c, a.dest): a.help for c in ("search", "tune", "report") for a in sub[c]._actions}
    assert "default: 20" in helps[("search", "trials")] and "stored" in helps[("tune", "trials")]
    assert "default: 8" in helps[("search", "population")]
    assert "HTML file to write" in helps[("report", "out")]
    # a study's folder under results/ is git-ignored; the shipped reference rows are not
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    run = lambda p: subprocess.run(["git", "check-ignore", "-q", p], cwd=root).returncode  # noqa: E731
    assert run("results/my-study/journal.log") == 0 and run("results/reference-cpu/runs/x.parquet") == 1


@pytest.mark.parametrize("script", ["throughput.py", "engine_check.py"])
def test_benchmark_scripts_say_no_cuda_in_a_line(script, capsys):
    import importlib.util
    from pathlib import Path

    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:  # argparse's one-line error, not a traceback
        module.main(["--device", "cuda"])
    assert exc.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_swiglu_inner_width_follows_d_model_as_mad_lab():
    from mad_bench.spec import load_spec

    # MAD-Lab's GLU: int(8 d / 3) rounded up to a multiple of 16 (hand-computed)
    for d, inner in ((32, 96), (64, 176), (128, 352), (256, 688)):
        assert load_spec({"name": "x", "d_model": d, "layers": ["swiglu"]}).layers[0].d_inner == inner
    written = load_spec({"name": "x", "d_model": 32, "layers": [{"type": "swiglu", "d_inner": 352}]})
    assert written.layers[0].d_inner == 352  # a written value is kept


def test_spec_files_say_what_they_are():
    import re
    from pathlib import Path

    from mad_bench.spec import load_spec
    from mad_bench.configs.architecture import ArchitectureSpec

    root = Path(__file__).resolve().parents[1]
    swa = load_spec(root / "architectures" / "sliding-window-attention.yaml")
    assert swa.sequence_mixers() == ["sliding-window-attention"] and swa.repeat == 2
    # the README's "optional keys spelled out" spec is the shipped file, every optional key written
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"optional keys spelled out\):\n\n```yaml\n(.*?)```", readme, flags=re.S).group(1)
    doc = yaml.safe_load(block)
    assert set(ArchitectureSpec.model_fields) == set(doc)
    shipped = load_spec(root / "architectures" / "striped-mamba-attention.yaml")
    assert load_spec(doc).spec_hash() == shipped.spec_hash()
    assert "issue" not in (root / "search_spaces" / "mixer-per-slot.yaml").read_text()
