"""Task suites: expansion into settings, overrides, errors."""
import pytest

from mad_bench.configs.errors import SpecError
from mad_bench.suite import expand, load_suite, parse_overrides


def test_mad_protocol_has_66_settings_and_6_grid_points():
    suite = load_suite("mad")
    settings = expand(suite)
    assert len(settings) == 66
    counts = {}
    for s in settings:
        counts[s.task] = counts.get(s.task, 0) + 1
    assert counts == {"in-context-recall": 11, "fuzzy-in-context-recall": 11,
                      "noisy-in-context-recall": 14, "selective-copying": 13, "compression": 11,
                      "memorization": 6}
    assert len(suite.grid.points()) == 6
    base = settings[0]
    assert base.setting_id == "baseline" and base.training.epochs == 200
    assert base.training.betas == (0.9, 0.98) and base.training.stop_at_accuracy == 0.999


def test_changes_vary_one_variable_of_the_baseline():
    settings = {s.setting_id: s for s in expand(load_suite("mad"), tasks=["selective-copying"])}
    base = settings["baseline"].task_setting
    changed = settings["num_tokens_to_copy=64"].task_setting
    assert changed.num_tokens_to_copy == 64
    assert changed.model_copy(update={"num_tokens_to_copy": 16}) == base


def test_overrides_apply_and_unknown_keys_fail():
    settings = expand(load_suite("smoke"), tasks=["in-context-recall"],
                      overrides=parse_overrides(["seq_len=32"]))
    assert settings[0].task_setting.seq_len == 32
    assert "seq_len=32" in settings[0].setting_id
    with pytest.raises(SpecError, match=r"--set.seq_lne: unknown setting .*did you mean 'seq_len'"):
        expand(load_suite("smoke"), tasks=["in-context-recall"], overrides={"seq_lne": 3})
    with pytest.raises(SpecError, match="not KEY=VALUE"):
        parse_overrides(["seq_len"])


def test_unknown_suite_and_task():
    with pytest.raises(SpecError, match="unknown suite 'mad-quik'.*did you mean 'mad-quick'"):
        load_suite("mad-quik")
    with pytest.raises(KeyError, match="(?i)did you mean 'in-context-recall'"):
        expand(load_suite("smoke"), tasks=["in-context-recal"])


def test_invalid_override_value_names_the_setting():
    with pytest.raises(SpecError) as info:
        expand(load_suite("smoke"), tasks=["compression"], overrides={"vocab_size": -1})
    assert "tasks.compression[baseline" in str(info.value) and "vocab_size" in str(info.value)


def test_bad_suite_file(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\ntasks:\n  in-context-recall:\n    baseline: {vocab_sise: 16}\n")
    with pytest.raises(SpecError, match="vocab_sise: unknown setting.*did you mean 'vocab_size'"):
        expand(load_suite(str(bad)))


def test_mqar_grid_lists_explicit_settings():
    settings = expand(load_suite("mqar"))
    pairs = [(s.task_setting.seq_len, s.task_setting.num_kv_pairs) for s in settings]
    assert pairs[0] == (64, 4) and (512, 128) in pairs and len(pairs) == 12
    assert settings[-1].setting_id == "seq_len=512,num_kv_pairs=128"
    assert all(s.task_setting.vocab_size == 8192 for s in settings)


def test_every_shipped_suite_expands():
    from mad_bench.suite import SUITES_DIR

    for path in SUITES_DIR.glob("*.yaml"):
        assert expand(load_suite(path.stem)), path
