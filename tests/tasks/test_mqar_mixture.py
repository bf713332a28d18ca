"""Zoology's MQAR mixture: per-segment generation, per-segment scoring, the suites, a tiny run."""
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from mad_bench.cli import main
from mad_bench.configs.errors import SpecError
from mad_bench.configs.tasks import MQARMixtureSetting, MQARSegment, parse_setting
from mad_bench.results import ResultsStore
from mad_bench.spec import load_spec
from mad_bench.suite import expand, load_suite, sweep_widths
from mad_bench.tasks import IGNORE_INDEX, generate
from mad_bench.tasks.mqar import SEGMENT_COLUMN, segment_counts

ROOT = Path(__file__).resolve().parents[2]
V = 64


def mixture(**kw):
    return MQARMixtureSetting(vocab_size=V, train_segments=["16x2:40", "32x4:30"],
                              test_segments=["16x2:10", "48x6:12"], **kw)


def test_each_segment_has_zoology_semantics():
    s = mixture()
    assert (s.seq_len, s.num_train_examples, s.num_test_examples) == (48, 70, 22)
    data = generate(s, "test", seed=3)
    assert data.inputs.shape == (22, 48) and data.segments.tolist() == [0] * 10 + [1] * 12
    for seg_id, seg in enumerate(s.test_segments):
        rows = data.segments == seg_id
        x, y = data.inputs[rows], data.targets[rows]
        L, kv = seg.seq_len, seg.num_kv_pairs
        # right padding beyond the segment's own length: token 0, nothing scored
        assert (x[:, L:] == 0).all() and (y[:, L:] == IGNORE_INDEX).all()
        keys, vals = x[:, 0:2 * kv:2], x[:, 1:2 * kv:2]
        assert ((keys >= 1) & (keys < V // 2)).all() and ((vals >= V // 2) & (vals < V)).all()
        assert all(len(set(r)) == kv for r in keys.tolist())  # distinct keys per example
        assert ((y != IGNORE_INDEX).sum(1) == kv).all()  # every pair queried once
        for r in range(x.shape[0]):
            answer = dict(zip(keys[r].tolist(), vals[r].tolist()))
            for p in (y[r] != IGNORE_INDEX).nonzero().flatten().tolist():
                assert p >= 2 * kv and (p - 2 * kv) % 2 == 0  # a query slot's first token
                assert y[r, p].item() == answer[x[r, p].item()]


def test_power_law_puts_queries_early():
    near = MQARMixtureSetting(vocab_size=V, train_segments=["64x4:300"], test_segments=["64x4:1"])
    flat = near.model_copy(update={"power_a": 1.0})
    first = lambda s: (generate(s, "train", 0).targets != IGNORE_INDEX).float().argmax(1)  # noqa: E731
    assert first(near).float().mean() < 0.6 * first(flat).float().mean()


def test_generation_is_seeded_and_splits_differ():
    s = mixture()
    a, b = generate(s, "train", 1), generate(s, "train", 1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(generate(s, "train", 2).inputs, a.inputs)
    assert a.inputs.shape == (70, 32)  # train pads to its own longest segment only


def test_segments_round_trip_and_bad_input_names_the_field():
    s = mixture()
    assert s.model_dump()["train_segments"] == ("16x2:40", "32x4:30")
    assert parse_setting({"task": "mqar-mixture", **s.model_dump(exclude={"task"})}) == s
    assert MQARSegment(seq_len=16, num_kv_pairs=2, num_examples=4) == MQARSegment.model_validate("16x2:4")
    with pytest.raises(ValidationError, match="expected 'SEQ_LENxKV:N'"):
        mixture(power_a=0.5).model_validate({"vocab_size": V, "train_segments": ["16-2"],
                                             "test_segments": ["16x2:1"]})
    with pytest.raises(ValidationError, match=r"train_segments\[1\]: .*seq_len"):
        MQARMixtureSetting(vocab_size=V, train_segments=["16x2:4", "16x8:4"], test_segments=["16x2:1"])
    with pytest.raises(ValidationError, match="seq_len: follows from the segments"):
        mixture(seq_len=16)
    with pytest.raises(ValidationError, match="share a"):
        MQARMixtureSetting(vocab_size=V, train_segments=["16x2:4", "16x2:5"], test_segments=["16x2:1"])


def test_segment_counts_hand_checked():
    targets = torch.tensor([[5, -100, 7], [-100, 2, -100], [1, 1, -100]])
    preds = torch.tensor([[5, 0, 0], [9, 2, 9], [1, 0, 0]])
    correct, total = segment_counts(preds, targets, torch.tensor([1, 0, 1]), 3)
    assert correct.tolist() == [1, 2, 0] and total.tolist() == [1, 4, 0]


def test_zoology_suites_load_with_their_numbers():
    mix = expand(load_suite("mqar-zoology"))
    assert len(mix) == 1 and mix[0].task == "mqar-mixture"
    ts = mix[0].task_setting
    assert [s.name for s in ts.test_segments][-1] == "seq_len=1024/num_kv_pairs=256"
    assert ts.num_train_examples == 180_000 and ts.seq_len == 1024
    assert ts == MQARMixtureSetting()  # the task's defaults are Zoology's mixture
    fig2 = load_suite("mqar-figure2")
    assert fig2.grid.d_model == [64, 128, 256, 512] and len(fig2.grid.points()) == 4
    batch = {(s.task_setting.seq_len, s.task_setting.num_kv_pairs): s.training.batch_size
             for s in expand(fig2)}
    assert batch == {(64, 4): 512, (128, 8): 512, (256, 16): 256, (512, 32): 128}


def test_suite_width_grid_and_bad_per_setting_training(tmp_path):
    spec = load_spec(str(ROOT / "architectures/zoology/attention.yaml"))
    wide = sweep_widths(load_suite("mqar-figure2").grid, [spec])
    assert [s.d_model for s in wide] == [64, 128, 256, 512] and {s.name for s in wide} == {spec.name}
    assert len({s.spec_hash() for s in wide}) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  mqar:\n    settings:\n      - {seq_len: 64, training: {epochz: 3}}\n")
    with pytest.raises(SpecError, match=r"settings\[0\].training.*epochz"):
        expand(load_suite(str(bad)))


def test_tiny_mixture_run_writes_per_segment_columns(tmp_path, capsys):
    suite = tmp_path / "tiny-mixture.yaml"
    suite.write_text("""
name: tiny-mixture
training: {epochs: 1, batch_size: 16, stop_at_accuracy: null, eval_select: last, precision: fp32}
grid: {lr: [3.0e-3], weight_decay: [0.0], d_model: [16, 32]}
tasks:
  mqar-mixture:
    baseline: {vocab_size: 32, train_segments: ["8x2:48", "16x3:32"], test_segments: ["8x2:16", "24x4:16"]}
""")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: tiny-based\nlayers: [base-conv, {type: based, feature_dim: 4}]\n")
    assert main(["bench", str(spec), "--suite", str(suite), "--results", str(tmp_path / "r"),
                 "--device", "cpu", "--no-progress"]) == 0
    frame = ResultsStore(tmp_path / "r").load()
    assert sorted(frame["d_model"]) == [16, 32] and (frame["status"] == "ok").all()
    cols = ["seg_acc/seq_len=8/num_kv_pairs=2", "seg_acc/seq_len=24/num_kv_pairs=4"]
    for _, row in frame.iterrows():
        accs = [row[c] for c in cols]
        assert all(0.0 <= a <= 1.0 for a in accs)
        # the segments' accuracies, weighted by their scored positions (16 x 2 and 16 x 4),
        # give the run's overall test accuracy (same final model)
        torch.testing.assert_close((32 * accs[0] + 64 * accs[1]) / 96, row["test_acc"],
                                   rtol=1e-6, atol=1e-6)


def test_every_ensemble_member_reports_its_segment_columns():
    """The engine scores each member's final parameters per segment (before compaction drops
    a stopped member): the same columns as that grid point trained alone."""
    from mad_bench import load_spec
    from mad_bench.configs.train import TrainConfig
    from mad_bench.train.ensemble import train_grid
    from mad_bench.train.trainer import train

    s = mixture()
    spec = load_spec({"name": "att", "d_model": 16, "layers": [{"type": "attention", "n_heads": 2}]})
    cfg = TrainConfig(epochs=2, batch_size=16, stop_at_accuracy=None)
    grid = [(1e-3, 0.0), (1e-2, 0.0)]
    results = train_grid(spec, s, [cfg.model_copy(update={"lr": lr, "weight_decay": wd}) for lr, wd in grid],
                         device="cpu")
    for (lr, wd), r in zip(grid, results):
        alone = train(spec, s, cfg.model_copy(update={"lr": lr, "weight_decay": wd}), device="cpu")
        assert set(r.extra) == {SEGMENT_COLUMN + seg.name for seg in s.test_segments}
        assert r.extra == pytest.approx(alone.extra, abs=1e-6)
    assert results[0].extra != results[1].extra
