"""The madbench command: exit codes, one-line errors, tables."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mad_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "architectures").glob("*.yaml"))


def test_shipped_architectures_validate(capsys):
    assert SPECS, "no shipped specs"
    assert main(["validate", *map(str, SPECS)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == len(SPECS)


def test_validate_reports_typo_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nlayers: [attention, swiglu, attentoin]\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "layers[2].type: unknown primitive 'attentoin' (did you mean 'attention'?)" in err[0]


def test_info_table(capsys):
    assert main(["info", str(ROOT / "architectures/transformer.yaml"), "--vocab-size", "16",
                 "--seq-len", "128"]) == 0
    out = capsys.readouterr().out
    assert "attention" in out and "swiglu" in out and "total" in out
    # KV cache of one attention layer: 2 (k, v) x 128 tokens x 128 dims x 4 bytes = 128 KiB
    assert "128.0 KiB" in out and "256.0 KiB" in out


def test_primitives_and_schema(capsys):
    assert main(["primitives"]) == 0
    out = capsys.readouterr().out
    assert "attention" in out and "sequence" in out and "channel" in out
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "layers" in schema["properties"]


def test_console_script_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlayers: [swiglu]\nd_model: lots\n")
    proc = subprocess.run([sys.executable, "-m", "mad_bench.cli", "info", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "d_model: 'lots' is not valid" in proc.stderr


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_spec_builds_and_runs(spec):
    import torch

    from mad_bench import build_model, load_spec

    s = load_spec(spec)
    backbone = s.backbone or "lm"
    model = build_model(s, vocab_size=16, max_len=32, backbone=backbone)
    assert model(torch.randint(0, 16, (2, 32))).shape == (2, 32, 16)
