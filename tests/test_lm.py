"""Specs as language models on real text (mad_bench.lm): corpora, batches, training, resume,
data-parallel runs on the CPU (gloo, 2 processes), generation through step(), the results row
and the proxy plot. A tiny model on a few KB of the standard library's own sources."""
from __future__ import annotations

import math
import shutil
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from mad_bench.cli import main
from mad_bench.lm.data import (VOCAB_SIZE, batch_starts, corpus_files, load_corpus, train_batch,
                               val_starts, windows)
from mad_bench.lm.generate import generate, load_for_generation
from mad_bench.lm.train import LMConfig, load_checkpoint, run_lm_jobs, train_lm
from mad_bench.results.leaderboard import build_leaderboard
from mad_bench.results.plots import proxy, proxy_points, spearman
from mad_bench.results.store import ResultsStore

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ["bisect.py", "colorsys.py", "keyword.py", "heapq.py", "textwrap.py", "json/decoder.py",
         "json/encoder.py", "json/scanner.py", "json/tool.py", "json/__init__.py"]
REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference-cpu"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Ten real files of the standard library (~100 KB), in a folder of their own."""
    root = tmp_path_factory.mktemp("corpus")
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(STDLIB / rel, root / rel)
    return root


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "d_model": 16, "layers": [
        {"type": "attention", "n_heads": 2}, {"type": "swiglu", "d_inner": 32}]}))
    return path


def tiny_cfg(corpus_dir, **kw) -> LMConfig:
    base = dict(corpus=str(corpus_dir), seq_len=32, batch_size=8, steps=6, eval_every=3,
                val_windows=8, warmup_steps=2, lr=3e-3)
    return LMConfig(**{**base, **kw})


# -- corpora and batches ------------------------------------------------------------------

def test_folder_split_is_by_file_deterministic_and_capped(corpus_dir):
    a = load_corpus(str(corpus_dir), val_fraction=0.2)
    b = load_corpus(str(corpus_dir), val_fraction=0.2)
    assert a.fingerprint == b.fingerprint and torch.equal(a.val, b.val)
    assert a.n_files == len(FILES) and 1 <= a.n_val_files < len(FILES)
    total = sum((corpus_dir / f).stat().st_size for f in FILES)
    # the files joined with one newline between files of a split
    assert len(a.train) + len(a.val) == total + (a.n_files - a.n_val_files - 1) + (a.n_val_files - 1)
    val_text = bytes(a.val.tolist())
    train_text = bytes(a.train.tolist())
    # every file is wholly on one side
    for rel in FILES:
        data = (corpus_dir / rel).read_bytes()
        assert (data in val_text) != (data in train_text), rel
    capped = load_corpus(str(corpus_dir), max_bytes=20_000, val_fraction=0.2)
    assert len(capped.train) + len(capped.val) <= 20_000 + capped.n_files
    assert capped.fingerprint != a.fingerprint


def test_single_file_splits_by_position(corpus_dir):
    c = load_corpus(str(corpus_dir / "heapq.py"), val_fraction=0.1)
    data = (corpus_dir / "heapq.py").read_bytes()
    assert bytes(c.train.tolist()) + bytes(c.val.tolist()) == data
    assert len(c.val) == len(data) - int(len(data) * 0.9)


def test_stdlib_corpus_is_this_interpreters_sources():
    name, root, files = corpus_files("stdlib")
    assert name == "stdlib" and root == STDLIB
    assert "json/decoder.py" in files and all(f.endswith(".py") for f in files)
    assert not any("site-packages" in f for f in files)


def test_corpus_errors_name_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--corpus"):
        load_corpus(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no text files"):
        load_corpus(str(tmp_path / "empty"))


def test_rank_slices_make_the_global_batch(corpus_dir):
    c = load_corpus(str(corpus_dir))
    x, y = train_batch(c, 16, 8, seed=3, step=5)
    parts = [train_batch(c, 16, 8, seed=3, step=5, rank=r, world=4) for r in range(4)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one byte
    starts = batch_starts(len(c.train), 16, 8, 3, 5)
    assert bytes(x[0].tolist()) == bytes(c.train[starts[0]:starts[0] + 16].tolist())
    assert not torch.equal(train_batch(c, 16, 8, seed=3, step=6)[0], x)
    vs = val_starts(c, 16, 8)
    assert len(vs) == 8 and vs[0] == 0 and vs[-1] == len(c.val) - 17
    assert windows(c.val, vs, 16)[0].max() < VOCAB_SIZE


# -- training, resume, the row ------------------------------------------------------------

def test_train_resume_is_bit_for_bit_and_stores_a_row(corpus_dir, spec_path, tmp_path):
    cfg = tiny_cfg(corpus_dir)
    full = train_lm(spec_path, cfg, checkpoint_dir=tmp_path / "full", results=tmp_path / "res")
    assert full.status == "ok" and full.step == 6 and len(full.history) == 2
    assert math.isclose(full.val_bpb, full.val_loss / math.log(2))
    assert full.history[-1]["val_loss"] < math.log(VOCAB_SIZE)  # learned something beyond uniform

    half = train_lm(spec_path, cfg, checkpoint_dir=tmp_path / "split", stop_after=3,
                    results=tmp_path / "res2")
    assert half.step == 3 and not (tmp_path / "res2" / "runs").exists()  # no row for a partial run
    rest = train_lm(spec_path, cfg, checkpoint_dir=tmp_path / "split", resume=True,
                    results=tmp_path / "res2")
    assert [h["val_loss"] for h in rest.history] == [h["val_loss"] for h in full.history]
    again = train_lm(spec_path, cfg, checkpoint_dir=tmp_path / "split", resume=True)  # nothing left
    assert (again.step, again.val_loss) == (6, full.val_loss)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["optim"]["state"][0]["exp_avg_sq"], b["optim"]["state"][0]["exp_avg_sq"])

    frame = ResultsStore(tmp_path / "res").load()
    row = frame.iloc[0]
    assert (row["kind"], row["task"], row["suite"], row["status"]) == ("lm", f"lm:{corpus_dir.name}", "lm", "ok")
    assert row["test_loss"] == full.val_loss and row["tokens"] == 6 * 8 * 32 and row["params"] == full.params

    with pytest.raises(ValueError, match="another run"):
        train_lm(spec_path, tiny_cfg(corpus_dir, lr=1e-3), checkpoint_dir=tmp_path / "split", resume=True)


def test_generate_feeds_the_prompt_through_step(corpus_dir, spec_path, tmp_path):
    train_lm(spec_path, tiny_cfg(corpus_dir, steps=3), checkpoint_dir=tmp_path / "ck")
    model = load_for_generation(spec_path, str(tmp_path / "ck"))
    prompt = b"def "
    out = generate(model, prompt, max_new_tokens=10, temperature=0)
    # greedy through step() equals greedy through the parallel forward, recomputed each byte
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(10):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert out == bytes(seq)
    s1 = generate(model, prompt, max_new_tokens=20, temperature=1.0, top_k=5, seed=1)
    assert s1 == generate(model, prompt, max_new_tokens=20, temperature=1.0, top_k=5, seed=1)
    assert len(s1) == 24 and s1.startswith(prompt)
    assert len(generate(model, prompt, max_new_tokens=500)) == model.max_len  # capped at max_len
    other = spec_path.with_name("other.yaml")
    other.write_text(yaml.safe_dump({"name": "other", "d_model": 16, "layers": ["swiglu"]}))
    with pytest.raises(ValueError, match="holds spec 'tiny'"):
        load_for_generation(other, str(tmp_path / "ck"))


def test_cli_lm_then_generate(corpus_dir, spec_path, tmp_path, capsys):
    argv = ["lm", str(spec_path), "--corpus", str(corpus_dir), "--seq-len", "32", "--batch-size", "4",
            "--steps", "2", "--eval-every", "2", "--val-windows", "4", "--warmup-steps", "0",
            "--results", str(tmp_path / "res"), "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "val_loss=" in out and "bpb=" in out and "tokens/s=" in out
    assert main(argv) == 0 and "already in" in capsys.readouterr().out
    assert main(["generate", str(spec_path), "--checkpoint", str(tmp_path / "ck" / "last.pt"),
                 "--prompt", "import ", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("import ")
    assert main(argv[:-1] + ["--batch-size", "3", "--nproc", "2"]) == 2
    assert "multiple of --nproc" in capsys.readouterr().err


# -- data parallel on the CPU (gloo, 2 processes) -------------------------------------------

def test_two_processes_match_one_ddp_and_fsdp(corpus_dir, spec_path, tmp_path):
    """Same global batch, each rank its slice: the losses of DDP and of FSDP over 2 processes
    equal the one-process run's (up to float summation order)."""
    cfg = tiny_cfg(corpus_dir, steps=4, eval_every=2)
    one = train_lm(spec_path, cfg)
    ddp, fsdp = run_lm_jobs(spec_path, [(cfg, {"checkpoint_dir": str(tmp_path / "ck")}),
                                        (LMConfig(**{**cfg.__dict__, "fsdp": True}), {})], nproc=2)
    for two in (ddp, fsdp):
        for h1, h2 in zip(one.history, two.history, strict=True):
            assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-5)
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)
    assert load_checkpoint(tmp_path / "ck")["step"] == 4


# -- the store: LM rows next to synthetic ones, the proxy plot ------------------------------

def _lm_rows(losses: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": "lm", "spec": s, "spec_hash": f"h{i}", "suite": "lm",
                          "task": "lm:stdlib", "setting": "seq_len=256", "status": "ok",
                          "test_loss": v, "val_bpb": v / math.log(2), "params": 1000}
                         for i, (s, v) in enumerate(losses.items())])


def test_leaderboard_ignores_lm_rows_and_proxy_ranks():
    synthetic = ResultsStore(REFERENCE).load()
    lm = _lm_rows({"transformer": 1.2, "hyena": 1.5, "mamba": 1.3, "short-conv": 1.9, "unseen": 1.0})
    mixed = pd.concat([synthetic, lm], ignore_index=True)
    assert build_leaderboard(mixed).render("md") == build_leaderboard(synthetic).render("md")

    pts = proxy_points(mixed)
    both = sorted({"transformer", "hyena", "mamba", "short-conv"} & set(synthetic["spec"]))  # in both kinds
    assert len(both) >= 3 and sorted(pts["spec"]) == both
    lb = build_leaderboard(synthetic)
    mad = {lb.info.loc[k, "spec"]: lb.cell(k, "MAD score")["score"] for k in lb.info.index}
    tasks = synthetic.groupby("spec")["task"].nunique()
    for row in pts.itertuples():
        assert row.mad_score == pytest.approx(mad[row.spec])
        # a score over part of the suite says so (the shipped store fills up over sessions)
        assert (row.n_tasks, row.tasks_total) == (tasks[row.spec], synthetic["task"].nunique())
    rho = spearman(pts["mad_score"], pts["val_loss"])
    # Spearman by hand: 1 - 6 sum d^2 / (n (n^2 - 1)) over ranks (no ties here)
    r1 = pts["mad_score"].rank().to_numpy()
    r2 = pts["val_loss"].rank().to_numpy()
    n = len(pts)
    assert rho == pytest.approx(1 - 6 * ((r1 - r2) ** 2).sum() / (n * (n * n - 1)))
    assert proxy(mixed).axes[0].get_title().startswith("MAD score vs language modelling")
    with pytest.raises(ValueError, match="no language-model rows"):
        proxy_points(synthetic)


def test_proxy_marks_a_mad_score_over_part_of_the_suite():
    """A spec whose MAD score misses some of the suite's tasks is labelled with its coverage
    (and drawn hollow), so a partial score is not read as a whole one."""
    synthetic = ResultsStore(REFERENCE).load()
    full = synthetic.groupby("spec")["task"].nunique()
    total = synthetic["task"].nunique()
    spec = full.idxmax()
    assert full[spec] == total
    cut = synthetic[~((synthetic["spec"] == spec) & (synthetic["task"] == sorted(synthetic["task"].unique())[0]))]
    others = [s for s in full.index if s != spec][:2]
    mixed = pd.concat([cut, _lm_rows({spec: 1.0, **{s: 1.5 + i for i, s in enumerate(others)}})],
                      ignore_index=True)
    pts = proxy_points(mixed).set_index("spec")
    assert (pts.loc[spec, "n_tasks"], pts.loc[spec, "tasks_total"]) == (total - 1, total)
    labels = [t.get_text() for t in proxy(mixed).axes[0].texts]
    assert f"{spec} † ({total - 1}/{total} tasks)" in labels


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [4, 3, 1, 2]) == pytest.approx(-0.8)
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    # ties share the average rank: ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
