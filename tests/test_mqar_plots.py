"""`madbench plot --kind mqar | state`: panels, axes and points from a hand-made store."""
import argparse

import pandas as pd
import pytest

from mad_bench.results import ResultsStore
from mad_bench.results.commands import register
from mad_bench.results.plots import mqar, mqar_points, state

# (spec, d_model, seq_len, kv) -> accuracies at two learning rates (the best one counts)
FIG2 = {("attn", 64, 64, 4): (0.99, 0.5), ("attn", 128, 64, 4): (1.0, 0.2),
        ("attn", 64, 128, 8): (0.9, 0.95), ("attn", 128, 128, 8): (0.97, 0.1),
        ("conv", 64, 64, 4): (0.4, 0.3), ("conv", 128, 64, 4): (0.6, 0.7),
        ("conv", 64, 128, 8): (0.1, 0.2)}
STATE = {("attn", 64): 65536, ("attn", 128): 131072, ("conv", 64): 768, ("conv", 128): 1536}


def _rows():
    for (spec, d, L, kv), accs in FIG2.items():
        for lr, acc in zip((1e-3, 1e-2), accs):
            yield {"spec": spec, "spec_hash": f"{spec}{d}", "suite": "fig2", "task": "mqar",
                   "setting": f"seq_len={L}", "seq_len": L, "num_kv_pairs": kv, "d_model": d,
                   "lr": lr, "weight_decay": 0.1, "seed": 0, "status": "ok", "test_acc": acc,
                   "test_acc_macro": acc, "state_bytes": STATE[(spec, d)] * L // 64}
    # a diverged run with a high accuracy must not count
    yield {"spec": "conv", "spec_hash": "conv64", "suite": "fig2", "task": "mqar", "setting": "x",
           "seq_len": 64, "num_kv_pairs": 4, "d_model": 64, "lr": 1.0, "weight_decay": 0.1,
           "seed": 0, "status": "diverged", "test_acc": 0.99, "state_bytes": 768}


def _mixture_rows():
    for spec, d, accs in (("based", 64, (0.9, 0.5)), ("based", 128, (1.0, 0.8))):
        yield {"spec": spec, "spec_hash": f"b{d}", "suite": "mix", "task": "mqar-mixture",
               "setting": "baseline", "seq_len": 256, "d_model": d, "lr": 1e-3, "weight_decay": 0.1,
               "seed": 0, "status": "ok", "test_acc": sum(accs) / 2, "state_bytes": 1000 * d,
               "seg_acc/seq_len=64/num_kv_pairs=4": accs[0],
               "seg_acc/seq_len=256/num_kv_pairs=16": accs[1]}


@pytest.fixture()
def frame():
    return pd.DataFrame(list(_rows()))


def test_points_take_the_best_grid_point(frame):
    pts = mqar_points(frame).set_index(["spec", "d_model", "seq_len"])
    assert pts.loc[("attn", 64, 128), "acc"] == 0.95
    assert pts.loc[("conv", 64, 64), "acc"] == 0.4  # the diverged 0.99 is ignored
    assert pts.loc[("conv", 128, 64), "state_bytes"] == 1536


def test_mqar_plot_panels_axes_and_lines(frame, tmp_path):
    fig = mqar(frame)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["seq_len 64, 4 kv pairs", "seq_len 128, 8 kv pairs"]
    assert all(a.get_xlabel() == "model width (d_model)" for a in axes)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["64", "128"]
    assert len(axes[0].containers) == 2 and len(axes[1].containers) == 2  # one line per spec
    attn = axes[0].containers[0].lines[0]
    assert list(attn.get_xdata()) == [64, 128] and list(attn.get_ydata()) == [0.99, 1.0]
    conv = axes[1].containers[1].lines[0]
    assert list(conv.get_xdata()) == [64] and list(conv.get_ydata()) == [0.2]


def test_state_plot_one_point_per_spec_and_width(frame):
    fig = state(frame)
    ax = [a for a in fig.axes if a.get_visible()][1]
    assert ax.get_title() == "seq_len 128, 8 kv pairs" and ax.get_xlabel().startswith("recurrent state")
    assert ax.get_xscale() == "log"
    attn = ax.containers[0].lines[0]
    assert list(attn.get_xdata()) == [131072, 262144] and list(attn.get_ydata()) == [0.95, 0.97]
    assert attn.get_linestyle() == "None"  # points, not a line


def test_mixture_rows_become_one_panel_per_segment():
    fig = mqar(pd.DataFrame(list(_mixture_rows())))
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["seq_len 64, 4 kv pairs", "seq_len 256, 16 kv pairs"]
    line = axes[1].containers[0].lines[0]
    assert list(line.get_xdata()) == [64, 128] and list(line.get_ydata()) == [0.5, 0.8]


def test_plot_command_and_clear_errors(frame, tmp_path, capsys):
    store = ResultsStore(tmp_path / "r")
    for i, row in frame.iterrows():
        store.write(f"k{i}", row.dropna().to_dict())
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for kind in ("mqar", "state"):
        args = parser.parse_args(["plot", "--kind", kind, "--results", str(tmp_path / "r"),
                                  "--out", str(tmp_path / f"{kind}.png")])
        assert args.func(args) == 0
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no ok mqar"):
        mqar(frame.assign(task="compression"))
    with pytest.raises(ValueError, match="no d_model column"):
        mqar(frame.drop(columns=["d_model"]))
    with pytest.raises(ValueError, match="state_bytes"):
        state(frame.drop(columns=["state_bytes"]))
