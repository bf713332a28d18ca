"""Spec loading, validation errors, round trips."""
import json

import pytest

from mad_bench import dump_spec, load_spec
from mad_bench.configs.architecture import ArchitectureSpec
from mad_bench.configs.errors import SpecError
from mad_bench.spec import spec_json_schema

BASE = {"name": "t", "d_model": 32, "layers": [{"type": "attention", "n_heads": 4}, "swiglu"]}


def problems(data):
    with pytest.raises(SpecError) as info:
        load_spec(data)
    return info.value.problems


def test_bare_names_and_defaults():
    spec = load_spec({"name": "m", "layers": ["attention", "swiglu"], "repeat": 2})
    assert spec.d_model == 128 and spec.norm == "rmsnorm" and spec.backbone is None
    att = spec.layers[0]
    assert (att.type, att.n_heads, att.rotary_dim) == ("attention", 16, 8)  # MAD-Lab defaults
    assert spec.layers[1].d_inner == 352
    assert [l.type for l in spec.all_layers] == ["attention", "swiglu"] * 2
    assert spec.primitives_summary() == "attention+swiglu x2"


def test_round_trip_yaml_and_json(tmp_path):
    spec = load_spec(dict(BASE, repeat=3, position_embedding="learned", tie_embeddings=True))
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"s{suffix}"
        dump_spec(spec, path)
        again = load_spec(path)
        assert again == spec
        assert again.spec_hash() == spec.spec_hash()
    assert json.loads((tmp_path / "s.json").read_text())["repeat"] == 3


def test_hash_ignores_name_but_not_structure():
    a = load_spec(BASE)
    assert load_spec(dict(BASE, name="other")).spec_hash() == a.spec_hash()
    assert load_spec(dict(BASE, repeat=2)).spec_hash() != a.spec_hash()


def test_typo_in_primitive_suggests():
    (path, msg), = problems({"name": "t", "layers": ["attention", "swigly"]})
    assert path == "layers[1].type"
    assert "unknown primitive 'swigly'" in msg and "did you mean 'swiglu'" in msg


def test_unknown_key_names_field():
    (path, msg), = problems({"name": "t", "layers": [{"type": "attention", "n_head": 4}]})
    assert path == "layers[0].n_head" and "unknown key" in msg and "did you mean 'n_heads'" in msg
    (path, msg), = problems({"name": "t", "layers": [{"type": "swiglu", "zzz": 1}]})
    assert path == "layers[0].zzz" and "valid: type, d_inner, bias" in msg


def test_unknown_top_level_key():
    (path, msg), = problems(dict(BASE, d_modle=64))
    assert path == "d_modle" and "unknown key" in msg and "did you mean 'd_model'" in msg


def test_wrong_type_names_value():
    (path, msg), = problems(dict(BASE, d_model="wide"))
    assert path == "d_model" and "'wide'" in msg and "integer" in msg


def test_impossible_combination():
    (path, msg), = problems({"name": "t", "d_model": 128, "layers": [{"type": "attention", "n_heads": 12}]})
    assert path.startswith("layers[0]") and "n_heads=12" in msg and "d_model=128" in msg


def test_empty_layers():
    (path, msg), = problems({"name": "t", "layers": []})
    assert path == "layers" and "empty" in msg


def test_bad_literal_lists_choices():
    (path, msg), = problems(dict(BASE, norm="batchnorm"))
    assert path == "norm" and "'rmsnorm'" in msg and "'layernorm'" in msg


def test_not_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\nlayers: {")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert "not valid YAML" in str(info.value) and "line" in str(info.value)
    listy = tmp_path / "list.yaml"
    listy.write_text("- attention\n- swiglu\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(listy)


def test_each_error_is_one_line_per_problem():
    with pytest.raises(SpecError) as info:
        load_spec({"name": "t", "d_model": -3, "norm": "x", "layers": ["attention"]})
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) >= 2
    assert all(":" in line for line in lines)


def test_json_schema_lists_primitives():
    schema = spec_json_schema()
    text = json.dumps(schema)
    assert schema["title"] == "ArchitectureSpec"
    for name in ("attention", "swiglu", "mlp"):
        assert f'"{name}"' in text
    assert ArchitectureSpec.model_json_schema() == schema


def test_impl_triton_only_where_a_kernel_exists():
    from mad_bench.primitives import REGISTRY

    without = [n for n, e in REGISTRY.items() if e.kind == "sequence" and not e.module.has_triton]
    if not without:
        pytest.skip("every sequence mixer has a Triton kernel")
    (path, msg), = problems({"name": "t", "layers": [{"type": without[0], "impl": "triton"}]})
    assert path == "layers[0].impl" and "valid: auto, torch" in msg


def test_configs_import_neither_torch_nor_pandas():
    """Every module of mad_bench.configs, and the loaders of specs, suites and search spaces,
    import without torch or pandas (what keeps `madbench validate` / `schema` fast)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import importlib, pkgutil, sys\nimport mad_bench.configs as c\n"
            "for m in pkgutil.walk_packages(c.__path__, 'mad_bench.configs.'):\n"
            "    importlib.import_module(m.name)\n"
            "import mad_bench.spec, mad_bench.suite, mad_bench.tune.space\n"
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
