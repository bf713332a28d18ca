"""Same-named specs (a suite's width variants, edited copies) are named by what differs."""
import hashlib

import pandas as pd
import torch

from mad_bench.results.leaderboard import build_leaderboard, spec_labels
from mad_bench.results.plots import mqar_points
from mad_bench.run.plan import RunRequest
from mad_bench.run.rows import make_row
from mad_bench.spec import load_spec
from mad_bench.suite import expand, load_suite, sweep_widths

ATTN = {"name": "zoo-attention", "d_model": 128, "position_embedding": "learned",
        "layers": [{"type": "attention", "n_heads": 1, "rotary_dim": 0}], "repeat": 2}


def _spec(**changes):
    data = {**ATTN, **changes}
    return load_spec(data)


def _row(spec, acc, *, config=True, d_model=True, seq_len=64):
    row = {"spec": spec.name, "spec_hash": spec.spec_hash(), "suite": "s", "task": "mqar",
           "setting": f"seq_len={seq_len}", "seq_len": seq_len, "num_kv_pairs": 4, "lr": 1e-3,
           "weight_decay": 0.1, "seed": 0, "status": "ok", "test_acc": acc, "test_acc_macro": acc}
    if config:
        row["spec_config"] = spec.config_json()
    if d_model:
        row["d_model"] = spec.d_model
    return row


def test_rows_keep_the_hashed_config():
    suite = load_suite("smoke")
    setting = expand(suite)[0]
    spec = _spec(d_model=64)
    row = make_row(RunRequest(spec, setting, setting.training), None, torch.device("cpu"), "x")
    assert hashlib.sha256(row["spec_config"].encode()).hexdigest()[:16] == row["spec_hash"]


def test_width_variants_are_named_by_width_in_the_leaderboard():
    widths = sweep_widths(load_suite("mqar-figure2-quick").grid,
                          [_spec(), load_spec("architectures/zoology/based.yaml")])
    frame = pd.DataFrame([_row(s, 0.1 * i) for i, s in enumerate(widths)])
    names = set(build_leaderboard(frame).info["spec"])
    assert names == {f"{n} d={d}" for n in ("zoo-attention", "zoo-based") for d in (64, 128, 256)}


def test_other_differing_fields_are_named_and_a_lone_name_is_kept():
    a, b = _spec(d_model=64), _spec(d_model=64, layers=[{"type": "attention", "n_heads": 2, "rotary_dim": 0}])
    c = _spec(d_model=128)
    alone = load_spec("architectures/zoology/based.yaml")
    labels = spec_labels(pd.DataFrame([_row(s, 0.5) for s in (a, b, c, alone)]))
    assert labels[a.spec_hash()] == "zoo-attention d=64 layers[0].n_heads=1"
    assert labels[b.spec_hash()] == "zoo-attention d=64 layers[0].n_heads=2"
    assert labels[c.spec_hash()] == "zoo-attention d=128 layers[0].n_heads=1"
    assert labels[alone.spec_hash()] == "zoo-based"


def test_many_differences_are_cut_and_stay_unique():
    specs = [_spec(d_model=64, repeat=r, dropout=p, position_embedding=e, norm="layernorm")
             for r, p, e in ((1, 0.0, "none"), (2, 0.1, "learned"))] + [_spec(d_model=64, repeat=1, dropout=0.0, position_embedding="none")]
    labels = spec_labels(pd.DataFrame([_row(s, 0.5) for s in specs]))
    assert labels.is_unique
    assert all(label.startswith("zoo-attention ") and label.endswith("...") for label in labels)


def test_rows_without_the_config_fall_back_to_width_then_hash():
    a, b, c = _spec(d_model=64), _spec(d_model=128), _spec(d_model=64, repeat=1)
    labels = spec_labels(pd.DataFrame([_row(s, 0.5, config=False) for s in (a, b, c)]))
    assert labels[b.spec_hash()] == "zoo-attention d=128"
    assert labels[a.spec_hash()] == f"zoo-attention d=64 ({a.spec_hash()[:8]})"
    assert labels[c.spec_hash()] == f"zoo-attention d=64 ({c.spec_hash()[:8]})"
    bare = spec_labels(pd.DataFrame([_row(s, 0.5, config=False, d_model=False) for s in (a, b)]))
    assert set(bare) == {f"zoo-attention ({s.spec_hash()[:8]})" for s in (a, b)}


def test_mqar_lines_join_widths_and_split_other_differences():
    heads2 = [{"type": "attention", "n_heads": 2, "rotary_dim": 0}]
    specs = [_spec(d_model=64), _spec(d_model=128), _spec(d_model=64, layers=heads2),
             _spec(d_model=128, layers=heads2)]
    pts = mqar_points(pd.DataFrame([_row(s, 0.25 * i) for i, s in enumerate(specs)]))
    assert sorted(set(pts["spec"])) == ["zoo-attention layers[0].n_heads=1",
                                        "zoo-attention layers[0].n_heads=2"]
    one = pts[pts["spec"] == "zoo-attention layers[0].n_heads=2"].set_index("d_model")["acc"]
    assert one.to_dict() == {64: 0.5, 128: 0.75}
