"""Leaderboards, plots and the report, from a small hand-computed results store."""
import argparse
import io
import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from mad_bench.results import ResultsStore
from mad_bench.results.commands import register
from mad_bench.results.leaderboard import MAD_COLUMN, build_leaderboard
from mad_bench.results.plots import difficulty, heatmap, pareto, pareto_front, save_figure, search_history
from mad_bench.results.report import build_report

SPECS = {  # name: (primitives summary, sequence mixer, params at the smaller vocab)
    "attn": ("attention+swiglu x2", "attention", 1000),
    "hyena": ("hyena+swiglu x2", "hyena", 800),
    "attn_big": ("attention+mlp x2", "attention", 3000),
}
SETTINGS = {("t1", "baseline"): (128, 16), ("t1", "seq_len=256"): (256, 16),
            ("t2", "baseline"): (128, 16), ("t2", "vocab_size=32"): (128, 32)}
# (spec, task, setting) -> accuracies at lr 1e-3, 1e-4 (None: that grid point was never run;
# "d": diverged, with a high accuracy that must not count)
GRID = {
    # attn: t1 = mean(0.7, 0.4) = 0.55 (diverged point ignored); t2 = mean(0.9, 0.7) = 0.8; MAD 0.675
    ("attn", "t1", "baseline"): (0.5, 0.7), ("attn", "t1", "seq_len=256"): (0.4, "d"),
    ("attn", "t2", "baseline"): (0.9, 0.8), ("attn", "t2", "vocab_size=32"): (0.6, 0.7),
    # hyena: t1 = mean(0.9, 0.8) = 0.85; t2 = mean(0.3, 0.2) = 0.25; MAD 0.55
    ("hyena", "t1", "baseline"): (0.9, 0.1), ("hyena", "t1", "seq_len=256"): (0.8, 0.2),
    ("hyena", "t2", "baseline"): (0.3, 0.2), ("hyena", "t2", "vocab_size=32"): (0.1, 0.2),
    # attn_big: t1 baseline has one grid point only (partial); t1 = mean(0.6, 0.6) = 0.6;
    # t2 = mean(1.0, 0.9) = 0.95; MAD 0.775
    ("attn_big", "t1", "baseline"): (0.6, None), ("attn_big", "t1", "seq_len=256"): (0.5, 0.6),
    ("attn_big", "t2", "baseline"): (1.0, 0.5), ("attn_big", "t2", "vocab_size=32"): (0.8, 0.9),
}
EXPECTED = {"attn": (0.55, 0.8, 0.675), "hyena": (0.85, 0.25, 0.55), "attn_big": (0.6, 0.95, 0.775)}


def _rows(seed=0, shift=0.0, only=None):
    for (spec, task, setting), accs in GRID.items():
        if only and spec not in only:
            continue
        seq_len, vocab = SETTINGS[(task, setting)]
        summary, mixer, params = SPECS[spec]
        for lr, acc in zip((1e-3, 1e-4), accs):
            if acc is None:
                continue
            status = "diverged" if acc == "d" else "ok"
            value = 0.99 if acc == "d" else min(1.0, acc + shift)
            yield {"spec": spec, "spec_hash": spec + "-h", "primitives": summary, "mixer": mixer,
                   "params": params + (16 if vocab == 32 else 0), "suite": "quick", "task": task,
                   "setting": setting, "vocab_size": vocab, "seq_len": seq_len,
                   "num_train_examples": 1000, "lr": lr, "weight_decay": 0.0, "seed": seed,
                   "status": status, "test_acc": value, "test_acc_macro": value, "wall_s": 1.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    s = ResultsStore(root)
    for i, r in enumerate(_rows()):
        s.write(f"k{i:03d}", r)
    return s


@pytest.fixture(scope="module")
def frame(store):
    return store.load()


def test_leaderboard_numbers_by_hand(frame):
    lb = build_leaderboard(frame, by="task")
    assert lb.suite == "quick" and lb.columns == ["t1", "t2", MAD_COLUMN]
    assert list(lb.info["spec"]) == ["attn_big", "attn", "hyena"]  # sorted by MAD score
    for spec, (t1, t2, mad) in EXPECTED.items():
        key = spec + "-h"
        assert lb.cell(key, "t1")["score"] == pytest.approx(t1)
        assert lb.cell(key, "t2")["score"] == pytest.approx(t2)
        assert lb.cell(key, MAD_COLUMN)["score"] == pytest.approx(mad)
    assert lb.info.loc["attn-h", "params"] == 1000 and lb.info.loc["attn-h", "primitives"] == "attention+swiglu x2"
    # runs behind each cell, partial grid flagged (not silently averaged)
    assert lb.cell("attn-h", "t1")["n_runs"] == 4 and lb.cell("attn-h", MAD_COLUMN)["n_runs"] == 8
    assert lb.cell("attn_big-h", "t1")["n_runs"] == 3
    assert not lb.cell("attn_big-h", "t1")["grid_complete"]
    assert not lb.cell("attn_big-h", MAD_COLUMN)["grid_complete"]
    assert lb.cell("attn_big-h", "t2")["grid_complete"] and lb.cell("attn-h", MAD_COLUMN)["grid_complete"]
    assert not lb.complete
    # best per column
    assert lb.is_best("hyena-h", "t1") and lb.is_best("attn_big-h", "t2")
    assert lb.is_best("attn_big-h", MAD_COLUMN) and not lb.is_best("attn-h", MAD_COLUMN)


def test_leaderboard_by_setting(frame):
    lb = build_leaderboard(frame, by="setting", metric="test_acc")
    assert lb.columns == ["t1[baseline]", "t1[seq_len=256]", "t2[baseline]", "t2[vocab_size=32]", MAD_COLUMN]
    assert lb.cell("attn-h", "t1[seq_len=256]")["score"] == pytest.approx(0.4)  # diverged run lost
    assert lb.cell("attn_big-h", "t1[baseline]")["n_runs"] == 1
    assert not lb.cell("attn_big-h", "t1[baseline]")["grid_complete"]
    assert lb.is_best("hyena-h", "t1[baseline]")
    wide = lb.wide()
    assert len(wide) == 3 and wide["t2[baseline] best"].sum() == 1


def test_row_mixer_column_comes_from_the_spec():
    from mad_bench import load_spec
    from mad_bench.run.rows import sequence_mixer

    hybrid = load_spec({"name": "h", "layers": ["attention", "mlp", "hyena", "mlp", "attention", "mlp"]})
    assert sequence_mixer(hybrid) == "attention+hyena"
    assert sequence_mixer(load_spec({"name": "m", "layers": ["mamba"], "repeat": 4})) == "mamba"
    assert sequence_mixer(load_spec({"name": "c", "layers": ["swiglu"]})) == "(none)"


def test_leaderboard_by_primitive(frame):
    lb = build_leaderboard(frame, by="primitive")
    assert list(lb.info["mixer"]) == ["attention", "hyena"]
    assert lb.info.loc["attention", "specs"] == 2 and lb.info.loc["attention", "best spec"] == "attn_big"
    att = lb.cell("attention", "t1")
    assert att["score"] == pytest.approx((0.55 + 0.6) / 2) and att["n_specs"] == 2
    assert att["std"] == pytest.approx(np.std([0.55, 0.6], ddof=1)) and att["n_runs"] == 7
    assert not att["grid_complete"]
    assert lb.cell("attention", MAD_COLUMN)["score"] == pytest.approx((0.675 + 0.775) / 2)
    assert lb.cell("hyena", MAD_COLUMN)["score"] == pytest.approx(0.55)
    assert "2 specs" in lb.cell_text("attention", "t2")


def test_formats_parse_back(frame):
    lb = build_leaderboard(frame)
    csv = pd.read_csv(io.StringIO(lb.render("csv")))
    assert list(csv["spec"]) == ["attn_big", "attn", "hyena"]
    assert csv.loc[0, MAD_COLUMN] == pytest.approx(0.775)
    assert list(csv[f"{MAD_COLUMN} best"]) == [True, False, False]
    assert list(csv["t1 runs"]) == [3, 4, 4] and list(csv["t1 grid complete"]) == [False, True, True]
    data = json.loads(lb.render("json"))
    assert data["suite"] == "quick" and [r["spec"] for r in data["rows"]] == ["attn_big", "attn", "hyena"]
    assert data["rows"][2]["cells"]["t1"]["best"] and data["rows"][2]["cells"]["t1"]["score"] == pytest.approx(0.85)
    html = lb.render("html")
    assert "<table" in html and html.count("<tr>") == 4 and "<b>0.850 [4]</b>" in html
    md = lb.render("md")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 4 and "**0.775 [7]\\***" in table[1] and "0.600 [3]\\*" in table[1]
    with pytest.raises(ValueError, match="format"):
        lb.render("xls")


def test_seeds_mean_std(frame):
    rows = list(_rows(seed=1, shift=0.1, only={"hyena"}))
    more = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    lb = build_leaderboard(more)
    mad = lb.cell("hyena-h", MAD_COLUMN)
    # per-seed MAD: 0.55 and 0.65 (every hyena accuracy + 0.1)
    assert mad["score"] == pytest.approx(0.6) and mad["n_seeds"] == 2
    assert mad["std"] == pytest.approx(np.std([0.55, 0.65], ddof=1))
    assert "0.600 ± 0.071 [16, 2 seeds]" in lb.cell_text("hyena-h", MAD_COLUMN)


def test_empty_and_unknown_suite(frame, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        build_leaderboard(ResultsStore(tmp_path).load())
    with pytest.raises(ValueError, match="no results for suite 'mad'"):
        build_leaderboard(frame, suite="mad")
    two = pd.concat([frame, frame.assign(suite="mad")], ignore_index=True)
    with pytest.raises(ValueError, match="several suites"):
        build_leaderboard(two)
    assert build_leaderboard(two, suite="mad").suite == "mad"


def _tick_labels(labels):
    return [t.get_text() for t in labels]


def test_heatmap_png(frame, tmp_path):
    fig = heatmap(frame)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "task" and ax.get_ylabel() == "spec"
    assert _tick_labels(ax.get_xticklabels()) == ["t1", "t2", MAD_COLUMN]
    assert _tick_labels(ax.get_yticklabels()) == ["attn_big", "attn", "hyena"]
    path = save_figure(fig, tmp_path / "heat.png")
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_difficulty_and_pareto(frame, tmp_path):
    fig = difficulty(frame)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [(a.get_title(), a.get_xlabel()) for a in axes] == [("t1", "sequence length"),
                                                                ("t2", "vocabulary size")]
    assert _tick_labels(axes[0].get_xticklabels()) == ["128", "256"]
    assert len(axes[0].containers) == 3  # one line per spec
    svg = save_figure(fig, tmp_path / "diff.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg

    fig = pareto(frame)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("parameters") and ax.get_ylabel().startswith("MAD score")
    # front: hyena (800, 0.55), attn (1000, 0.675), attn_big (3000, 0.775): all on it
    assert list(pareto_front([800, 1000, 3000], [0.55, 0.675, 0.775])) == [True, True, True]
    assert list(pareto_front([800, 1000, 3000], [0.55, 0.5, 0.775])) == [True, False, True]
    img = mpimg.imread(save_figure(fig, tmp_path / "p.png"))
    assert img.ndim == 3
    with pytest.raises(ValueError, match="png or .svg"):
        save_figure(fig, tmp_path / "p.jpg")


def test_search_history():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="s")
    for v in (0.2, 0.5, 0.3, 0.7):
        study.enqueue_trial({"x": v})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    fig = search_history(study)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "trial number"
    best = [line for line in ax.get_lines() if line.get_label() == "best so far"][0]
    assert list(best.get_ydata()) == pytest.approx([0.2, 0.5, 0.5, 0.7])


def test_cli_and_report(store, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    root = str(store.root)
    assert run("leaderboard", "--results", root, "--format", "json") == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == 3
    out = tmp_path / "lb.csv"
    assert run("leaderboard", "--results", root, "--by", "primitive", "--format", "csv", "--out", str(out)) == 0
    assert list(pd.read_csv(out)["mixer"]) == ["attention", "hyena"]
    assert run("plot", "--kind", "pareto", "--results", root, "--out", str(tmp_path / "p.svg")) == 0
    with pytest.raises(ValueError, match="no results directory"):
        run("leaderboard", "--results", str(tmp_path / "none"))
    (tmp_path / "blank").mkdir()
    with pytest.raises(ValueError, match="no runs in"):
        run("leaderboard", "--results", str(tmp_path / "blank"))
    with pytest.raises(ValueError, match="--study"):
        run("plot", "--kind", "search-history", "--out", str(tmp_path / "h.png"))

    page = build_report(store.load(), source=root)
    assert page.count("<table") == 3 and page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert run("report", "--results", root, "--out", str(tmp_path / "r.html")) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_a_spec_missing_tasks_ranks_after_complete_ones_and_is_never_best():
    rows = list(_rows())
    # "lucky" ran only t1's baseline and scored 1.0 there: a MAD score over 1 of 4 settings
    rows.append({**rows[0], "spec": "lucky", "spec_hash": "lucky-h", "test_acc": 1.0,
                 "test_acc_macro": 1.0, "lr": 1e-3})
    rows.append({**rows[0], "spec": "lucky", "spec_hash": "lucky-h", "test_acc": 1.0,
                 "test_acc_macro": 1.0, "lr": 1e-4})
    board = build_leaderboard(pd.DataFrame(rows), by="task")
    order = list(board.info["spec"])
    assert order[-1] == "lucky" and order[:3] == ["attn_big", "attn", "hyena"]
    assert not board.is_best("lucky-h", MAD_COLUMN) and board.is_best("attn_big-h", MAD_COLUMN)
    lucky_row = next(line for line in board.render("md").splitlines() if "| lucky |" in line)
    assert lucky_row.rstrip(" |").endswith("†")


def _failed(spec, task, setting, lr=1e-2, seed=0):
    summary = SPECS.get(spec, ("attention+swiglu x2",))[0]
    return {"spec": spec, "spec_hash": spec + "-h", "primitives": summary, "suite": "quick",
            "task": task, "setting": setting, "lr": lr, "weight_decay": 0.0, "seed": seed,
            "status": "failed", "error": "RuntimeError: boom", "params": None}


def test_failed_runs_are_missing_never_zero(tmp_path):
    """A failed run is no score: the hand-computed numbers stand, the cell says how many runs
    failed, and a spec with nothing but failed runs shows '–', ranks last and is never best."""
    s = ResultsStore(tmp_path)
    for i, r in enumerate(_rows()):
        s.write(f"k{i:03d}", r)
    s.write("f1", _failed("hyena", "t2", "baseline"))      # beside hyena's two scored grid points
    s.write("f2", _failed("attn", "t1", "seq_len=256", lr=1e-4, seed=0) | {"weight_decay": 0.1})
    for i, (task, setting) in enumerate(SETTINGS):            # a spec whose every run failed
        s.write(f"g{i}", _failed("broken", task, setting))
    lb = build_leaderboard(s.load(), by="task")
    for spec, (t1, t2, mad) in EXPECTED.items():
        assert lb.cell(spec + "-h", "t1")["score"] == pytest.approx(t1)
        assert lb.cell(spec + "-h", "t2")["score"] == pytest.approx(t2)
        assert lb.cell(spec + "-h", MAD_COLUMN)["score"] == pytest.approx(mad)
    assert lb.cell("hyena-h", "t2")["n_failed"] == 1 and lb.cell("hyena-h", "t1")["n_failed"] == 0
    assert lb.cell("hyena-h", "t2")["n_runs"] == 4, "the failed run is not counted as a run"
    assert lb.cell("hyena-h", MAD_COLUMN)["n_failed"] == 1
    assert list(lb.info["spec"]) == ["attn_big", "attn", "hyena", "broken"]
    assert lb.cell_text("broken-h", "t1") == "–✗2" and lb.cell_text("broken-h", MAD_COLUMN) == "–✗4"
    assert lb.cell_text("hyena-h", "t2").endswith("✗1")
    assert not any(lb.is_best("broken-h", c) for c in lb.columns)
    md = lb.to_markdown()
    assert "0.000" not in md and "n failed runs" in md
    rec = json.loads(lb.to_json())["rows"][3]
    assert rec["spec"] == "broken" and rec["cells"]["t1"]["score"] is None and rec["cells"]["t1"]["n_failed"] == 2
    by_setting = build_leaderboard(s.load(), by="setting")
    assert by_setting.cell("hyena-h", "t2[baseline]")["n_failed"] == 1
    assert by_setting.cell("hyena-h", "t2[baseline]")["score"] == pytest.approx(0.3)


def test_a_store_of_failed_runs_only_reads_everywhere(tmp_path, capsys):
    """Every reader of a store holding nothing but failed runs answers (no KeyError)."""
    from mad_bench.cli import main

    s = ResultsStore(tmp_path / "r")
    for i, (spec, task) in enumerate([("a", "t1"), ("a", "t2"), ("b", "t1")]):
        s.write(f"k{i}", _failed(spec, task, "baseline"))
    root = str(s.root)
    assert main(["results", "--results", root]) == 0
    assert capsys.readouterr().out.count("│ failed │") == 3
    for by in ("task", "setting", "primitive"):
        for fmt in ("md", "csv", "html", "json"):
            assert main(["leaderboard", "--results", root, "--by", by, "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "–✗2" in out and "0.000" not in out
    assert main(["plot", "--kind", "heatmap", "--results", root, "--out", str(tmp_path / "h.png")]) == 0
    assert main(["report", "--results", root, "--out", str(tmp_path / "r.html")]) == 0
    from mad_bench.cli import _print_scores

    _print_scores(s.load(), "quick", "test_acc_macro")
    assert "3 failed run(s) left out of the scores" in capsys.readouterr().out


def test_empty_store_is_the_same_error_for_every_reader(tmp_path, capsys):
    """results and leaderboard agree on an empty store (exit 2, one line), and point to a store
    inside it, as on a fresh clone whose results/ holds only results/reference-cpu."""
    from mad_bench.cli import main

    inner = ResultsStore(tmp_path / "results" / "reference")
    for i, r in enumerate(_rows(only=["attn"])):
        inner.write(f"k{i}", r)
    lines = []
    for cmd in ("results", "leaderboard"):
        assert main([cmd, "--results", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        lines.append(err[0])
    assert lines[0] == lines[1]
    assert f"--results {tmp_path / 'results' / 'reference'}" in lines[0]
