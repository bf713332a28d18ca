"""Structure tests of the task generators on tiny, hand-readable settings.

Each structural check recomputes the expected targets with a plain Python loop over tokens.
"""
from __future__ import annotations

import pydantic
import pytest
import torch

from mad_bench.configs.tasks import TASKS, get_task, parse_setting
from mad_bench.tasks import generate, split_seed
from mad_bench.tasks.base import sample_distinct
from mad_bench.tasks.memorization import kv_map
from mad_bench.tasks.metrics import (AccuracyCounts, accuracy, accuracy_counts, finalize,
                                     macro_accuracy)

IGN = -100

TINY = {
    "in-context-recall": dict(vocab_size=8, seq_len=16),
    "fuzzy-in-context-recall": dict(vocab_size=16, seq_len=32),
    "noisy-in-context-recall": dict(vocab_size=12, noise_vocab_size=4, frac_noise=0.5, seq_len=16),
    "selective-copying": dict(vocab_size=6, seq_len=16, num_tokens_to_copy=3),
    "compression": dict(vocab_size=5, seq_len=8),
    "memorization": dict(vocab_size=12, seq_len=8),
    "mqar": dict(vocab_size=64, seq_len=32, num_kv_pairs=4),
}


def tiny(name, **kw):
    return get_task(name)(**{**TINY[name], "num_train_examples": 64, "num_test_examples": 32, **kw})


def rows(t):
    return t.tolist()


# --------------------------------------------------------------------------- registry / api
def test_registry_names():
    assert set(TASKS) == {"in-context-recall", "fuzzy-in-context-recall", "noisy-in-context-recall",
                          "selective-copying", "compression", "memorization", "mqar", "mqar-mixture"}
    for name, cls in TASKS.items():
        assert cls().task == name
        assert cls.backbone == ("autoencoder" if name == "compression" else "lm")


def test_get_task_did_you_mean():
    with pytest.raises(KeyError, match="Did you mean 'in-context-recall'"):
        get_task("in-context-recal")
    with pytest.raises(KeyError, match="Known tasks"):
        get_task("zzz")


def test_parse_setting_discriminated():
    s = parse_setting({"task": "mqar", "vocab_size": 128, "seq_len": 64, "num_kv_pairs": 4})
    assert type(s).__name__ == "MQARSetting" and s.num_kv_pairs == 4
    with pytest.raises(KeyError, match="Did you mean"):
        parse_setting({"task": "mqr"})


def test_mad_baseline_defaults():
    assert TASKS["in-context-recall"]().model_dump() == dict(
        task="in-context-recall", vocab_size=16, seq_len=128, num_train_examples=12800, num_test_examples=1280)
    n = TASKS["noisy-in-context-recall"]()
    assert (n.vocab_size, n.noise_vocab_size, n.frac_noise) == (32, 16, 0.2)
    f = TASKS["fuzzy-in-context-recall"]()
    assert (f.k_motif_size, f.v_motif_size) == (3, 3)
    sc = TASKS["selective-copying"]()
    assert (sc.vocab_size, sc.seq_len, sc.num_tokens_to_copy) == (16, 256, 16)
    c = TASKS["compression"]()
    assert (c.vocab_size, c.seq_len) == (16, 32)
    m = TASKS["memorization"]()
    assert (m.vocab_size, m.seq_len, m.num_train_examples) == (256, 32, 256)


# --------------------------------------------------------------------------- generic properties
@pytest.mark.parametrize("name", sorted(TINY))
def test_determinism_seeds_and_ranges(name):
    s = tiny(name)
    state = torch.get_rng_state()
    a, b = generate(s, "train", 7), generate(s, "train", 7)
    assert torch.equal(torch.get_rng_state(), state), "global RNG must not be used"
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.eval_targets, b.eval_targets)
    c = generate(s, "train", 8)
    assert not torch.equal(a.inputs, c.inputs)
    t = generate(s, "test", 7)
    assert a.inputs.shape[0] == 64 and t.inputs.shape[0] == 32
    assert a.inputs.dtype == torch.long and a.targets.dtype == torch.long
    for d in (a, t):
        assert d.inputs.min() >= 0 and d.inputs.max() < s.model_vocab_size()
        tg = d.targets[d.targets != IGN]
        assert tg.min() >= 0 and tg.max() < s.model_vocab_size()
        assert d.scored_mask.any(dim=1).all(), "every example has a scored position"
    assert torch.equal(t.targets, t.eval_targets), "test split targets are the scored-only targets"


@pytest.mark.parametrize("name", ["in-context-recall", "fuzzy-in-context-recall", "selective-copying"])
def test_chunked_generation_prefix(name):
    # seq_len 1024 -> chunks of 1024 examples; 1100 examples take the chunked path
    kw = dict(seq_len=1024, num_test_examples=1)
    if name == "selective-copying":
        kw["num_tokens_to_copy"] = 16
    s = get_task(name)(num_train_examples=1100, **kw)
    assert s.chunk_examples() == 1024
    big = generate(s, "train", 0)
    small = generate(get_task(name)(num_train_examples=1024, **kw), "train", 0)
    assert big.inputs.shape[0] == 1100
    assert torch.equal(big.inputs[:1024], small.inputs) and torch.equal(big.targets[:1024], small.targets)
    assert not torch.equal(big.inputs[1024:1100], big.inputs[:76])
    assert big.scored_mask[1024:].any(1).all()


def test_split_seeds_disjoint():
    train = {split_seed(s, "train") for s in range(2000)}
    test = {split_seed(s, "test") for s in range(2000)}
    assert not train & test and len(train) == len(test) == 2000
    assert all(x % 2 == 0 for x in train) and all(x % 2 == 1 for x in test)
    with pytest.raises(ValueError, match="split"):
        split_seed(0, "valid")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_test_share_no_example(name):
    if name == "mqar-mixture":  # its example counts follow from its segments
        s = get_task(name)(train_segments=["32x2:200", "64x4:100"], test_segments=["32x2:50", "64x4:50"])
    else:
        s = get_task(name)(num_train_examples=300, num_test_examples=100)
    tr, te = generate(s, "train", 0), generate(s, "test", 0)
    train_rows = {tuple(r) for r in rows(tr.inputs)}
    assert not any(tuple(r) in train_rows for r in rows(te.inputs))


def test_sample_distinct_is_injective():
    g = torch.Generator().manual_seed(0)
    for s, n in [(3, 7), (8, 9), (12, 100), (40, 60), (64, 4095)]:
        x = sample_distinct(500, s, n, g)
        assert x.shape == (500, s) and x.min() >= 0 and x.max() < n
        assert (x.sort(1).values.diff(dim=1) != 0).all()


# --------------------------------------------------------------------------- in-context recall
def check_recall(s, d, split, noise_lo=None):
    nsv = s.vocab_size - getattr(s, "noise_vocab_size", 0)
    keys, vals = range(0, nsv // 2), range(nsv // 2, nsv)
    L = s.seq_len - 1
    assert d.inputs.shape[1] == L
    full_train = generate(s, "train", 3) if split == "test" else d
    for x, y_tr, y_ev in zip(rows(d.inputs), rows(full_train.targets if split == "train" else d.targets),
                             rows(d.eval_targets)):
        if split == "train":
            assert x[1:] == y_tr[:-1], "training targets are the next tokens"
            raw = x + [y_tr[-1]]
        else:
            raw = None
        seen, expected, n_pairs = {}, [IGN] * L, 0
        toks = x + [None]
        for i in range(0, s.seq_len, 2):
            k, v = toks[i], toks[i + 1]
            last = i == s.seq_len - 2
            if noise_lo is not None and k >= noise_lo:
                assert not last, "the final query is never noise"
                assert toks[i + 1] >= noise_lo, "noise comes in whole slots"
                continue
            assert k in keys, (k, x)
            if v is not None:
                assert v in vals
            n_pairs += 1
            if k in seen:
                if v is not None:
                    assert v == seen[k], "a key keeps its value"
                expected[i] = seen[k]
            else:
                assert not last, "final query repeats a presented key"
                seen[k] = v
        assert n_pairs >= 2
        assert y_ev == expected
        if raw is not None:
            assert y_ev[-1] == raw[-1]


@pytest.mark.parametrize("split", ["train", "test"])
def test_in_context_recall_structure(split):
    s = tiny("in-context-recall")
    check_recall(s, generate(s, split, 3), split)


def test_in_context_recall_hand_example():
    s = get_task("in-context-recall")(vocab_size=8, seq_len=12, num_train_examples=1)
    d = generate(s, "train", 0)
    x, y, e = d.inputs[0].tolist(), d.targets[0].tolist(), d.eval_targets[0].tolist()
    # keys 0..3 at even positions, values 4..7 at odd positions; 11 inputs, targets shifted
    assert all(t < 4 for t in x[0::2]) and all(4 <= t < 8 for t in x[1::2])
    assert y[:-1] == x[1:]
    assert e[-1] == y[-1] and all(e[i] == IGN for i in range(1, 11, 2))


@pytest.mark.parametrize("split", ["train", "test"])
def test_noisy_recall_structure(split):
    s = tiny("noisy-in-context-recall")
    d = generate(s, split, 3)
    check_recall(s, d, split, noise_lo=8)
    assert (d.inputs >= 8).any(), "noise present at frac_noise=0.5"
    # noise targets are trained on (train split) but never scored
    if split == "train":
        assert (d.targets >= 8).any()
    assert not (d.eval_targets >= 8).any()


def test_noisy_recall_noise_rate():
    s = get_task("noisy-in-context-recall")(frac_noise=0.6, num_train_examples=400)
    d = generate(s, "train", 0)
    frac = (d.inputs >= 16).float().mean().item()
    assert 0.5 < frac < 0.65  # ~0.6 of the 63 body slots, final slot never noise


# --------------------------------------------------------------------------- fuzzy recall
def parse_fuzzy(raw, pad, nk):
    """Split a raw token list into (key tuple, value tuple) runs after the left padding."""
    i = 0
    while raw[i] == pad:
        i += 1
    npad, pairs = i, []
    while i < len(raw):
        k = []
        while i < len(raw) and raw[i] < nk:
            k.append(raw[i]); i += 1
        v = []
        while i < len(raw) and nk <= raw[i] < pad:
            v.append(raw[i]); i += 1
        assert k and v, raw
        pairs.append((tuple(k), tuple(v), i - len(v)))
    return npad, pairs


@pytest.mark.parametrize("split", ["train", "test"])
def test_fuzzy_recall_structure(split):
    s = tiny("fuzzy-in-context-recall")
    pad, nk = 15, 7  # vocab 16: keys 0..6, values 7..14, pad 15
    assert s.pad_token() == pad and s.key_vocab() == range(0, 7) and s.value_vocab() == range(7, 15)
    d = generate(s, split, 5)
    tr = generate(s, "train", 5)
    assert d.inputs.shape[1] == s.seq_len
    key_sizes = set()
    for x, y_tr, y_ev in zip(rows(d.inputs), rows(tr.targets if split == "train" else d.targets),
                             rows(d.eval_targets)):
        if split == "train":
            assert x[1:] == y_tr[:-1]
            raw = x + [y_tr[-1]]
        else:
            # reconstruct the last raw token from the scored final value
            raw = x + [y_ev[-1]]
        assert len(raw) == s.seq_len + 1
        npad, pairs = parse_fuzzy(raw, pad, nk)
        assert npad >= 2
        seen, expected = {}, [IGN] * (s.seq_len + 1)
        for j, (k, v, vstart) in enumerate(pairs):
            assert 1 <= len(k) <= 3 and 1 <= len(v) <= 3
            assert len(set(k)) == len(k) and len(set(v)) == len(v), "motifs use distinct tokens"
            key_sizes.add(len(k))
            if k in seen:
                assert v == seen[k]
                expected[vstart:vstart + len(v)] = list(v)
            else:
                assert j < len(pairs) - 1, "final query repeats a presented key"
                seen[k] = v
        assert y_ev == expected[1:]
    if split == "test":
        assert key_sizes == {3}, "MAD-Lab prompts test keys at the maximum motif size"
    else:
        assert key_sizes == {1, 2, 3}


def test_fuzzy_recall_final_query_key_size_uniform():
    """MAD-Lab draws the final query's key size uniformly in 1..k (not a key uniformly among
    those present, which favours long keys): each size ~1/3 of 1500 training rows."""
    s = get_task("fuzzy-in-context-recall")(vocab_size=16, seq_len=128, num_train_examples=1500)
    d = generate(s, "train", 3)
    raw = torch.cat([d.inputs, d.targets[:, -1:]], 1)
    sizes = [len(parse_fuzzy(r, 15, 7)[1][-1][0]) for r in rows(raw)]
    freq = [sizes.count(k) / len(sizes) for k in (1, 2, 3)]
    assert all(abs(f - 1 / 3) < 0.05 for f in freq), freq


def test_fuzzy_recall_train_targets_include_pad():
    s = tiny("fuzzy-in-context-recall")
    d = generate(s, "train", 0)
    assert (d.targets == 15).any() and not (d.eval_targets == 15).any()


# --------------------------------------------------------------------------- selective copying
def test_selective_copying_structure():
    s = tiny("selective-copying")  # vocab 6: data 0..3, blank 4, copy 5; n=3, seq 16 -> 9 blanks
    assert (s.blank_token(), s.copy_token()) == (4, 5)
    d = generate(s, "train", 1)
    n, L = 3, 16
    for x, y in zip(rows(d.inputs), rows(d.targets)):
        head, copy_pos = x[:L - n - 1], L - n - 1
        data = [t for t in head if t != 4]
        assert len(data) == n and all(0 <= t < 4 for t in data)
        assert head.count(4) == L - 2 * n - 1
        assert head[-1] != 4, "MAD-Lab inserts blanks only before data tokens"
        assert x[copy_pos] == 5 and x[copy_pos + 1:] == [4] * n
        assert y == [IGN] * (L - n) + data
    # blanks are actually scattered (not all in one place)
    first_data = [next(i for i, t in enumerate(r) if t != 4) for r in rows(d.inputs)]
    assert len(set(first_data)) > 3
    t = generate(s, "test", 1)
    assert torch.equal(t.targets, t.eval_targets)


# --------------------------------------------------------------------------- compression
def test_compression_structure():
    s = tiny("compression")
    assert s.backbone == "autoencoder" and s.compression_token() == 4
    for split in ("train", "test"):
        d = generate(s, split, 2)
        assert (d.inputs[:, -1] == 4).all() and (d.inputs[:, :-1] < 4).all()
        assert torch.equal(d.targets, d.inputs) and torch.equal(d.eval_targets, d.inputs)


# --------------------------------------------------------------------------- memorization
def test_memorization_structure():
    s = tiny("memorization")  # vocab 12: keys 0..4, values 5..10, insert 11
    assert s.insert_token() == 11 and s.num_keys() == 5
    m = kv_map(s, 9).tolist()
    assert len(m) == 5 and len(set(m)) == 5 and all(5 <= v <= 10 for v in m)
    tr, te = generate(s, "train", 9), generate(s, "test", 9)
    table = {}
    for d in (tr, te):
        for x, y in zip(rows(d.inputs), rows(d.targets)):
            assert x[1::2] == [11] * 4 and all(k < 5 for k in x[0::2])
            assert y[0::2] == [IGN] * 4
            for k, v in zip(x[0::2], y[1::2]):
                assert table.setdefault(k, v) == v, "one fixed map across examples and splits"
                assert v == m[k]
    assert set(table) == set(range(5)), "train and test draw from the same key set"


def test_memorization_map_seed():
    s = get_task("memorization")()
    assert torch.equal(kv_map(s, 1), kv_map(s, 1))
    assert not torch.equal(kv_map(s, 1), kv_map(s, 2)), "map follows the run seed by default (MAD-Lab)"
    f = get_task("memorization")(map_seed=5)
    assert torch.equal(kv_map(f, 1), kv_map(f, 2))
    a, b = generate(f, "train", 1), generate(f, "train", 2)
    assert not torch.equal(a.inputs, b.inputs)


# --------------------------------------------------------------------------- mqar
def test_mqar_structure():
    s = tiny("mqar")  # keys 1..31, values 32..63, 4 pairs, 32 tokens
    assert s.key_vocab() == range(1, 32) and s.value_vocab() == range(32, 64)
    d = generate(s, "train", 4)
    for x, y in zip(rows(d.inputs), rows(d.targets)):
        ks, vs = x[0:8:2], x[1:8:2]
        assert len(set(ks)) == 4 and len(set(vs)) == 4
        assert all(1 <= k < 32 for k in ks) and all(32 <= v < 64 for v in vs)
        kv = dict(zip(ks, vs))
        scored = [i for i, t in enumerate(y) if t != IGN]
        assert len(scored) == 4 and all(i >= 8 and (i - 8) % 2 == 0 for i in scored)
        assert sorted(x[i] for i in scored) == sorted(ks), "each key queried once"
        for i in scored:
            assert y[i] == kv[x[i]], "answer = value paired with the query key"
    t = generate(s, "test", 4)
    assert torch.equal(t.targets, t.eval_targets)


def test_mqar_power_law_vs_uniform():
    kw = dict(vocab_size=256, seq_len=256, num_kv_pairs=8, num_train_examples=500)
    near = generate(get_task("mqar")(power_a=0.01, **kw), "train", 0)
    unif = generate(get_task("mqar")(power_a=1.0, **kw), "train", 0)
    pos = lambda d: (d.targets != IGN).nonzero()[:, 1].float().mean().item()  # noqa: E731
    assert pos(near) < pos(unif) - 20
    fill = generate(get_task("mqar")(random_non_queries=False, **kw), "train", 0)
    scored = fill.targets != IGN
    assert (fill.inputs[:, 16:][~scored[:, 16:]] == 0).all()


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name,kw,field", [
    ("in-context-recall", dict(seq_len=127), "seq_len"),
    ("in-context-recall", dict(vocab_size=1), "vocab_size"),
    ("noisy-in-context-recall", dict(vocab_size=32, noise_vocab_size=31), "noise_vocab_size"),
    ("noisy-in-context-recall", dict(frac_noise=1.0), "frac_noise"),
    ("fuzzy-in-context-recall", dict(vocab_size=6), "vocab_size"),
    ("fuzzy-in-context-recall", dict(seq_len=12), "seq_len"),
    ("selective-copying", dict(seq_len=32, num_tokens_to_copy=16), "seq_len"),
    ("selective-copying", dict(vocab_size=2), "vocab_size"),
    ("memorization", dict(seq_len=31), "seq_len"),
    ("mqar", dict(seq_len=64, num_kv_pairs=17), "seq_len"),
    ("mqar", dict(vocab_size=16, num_kv_pairs=8), "vocab_size"),
    ("mqar", dict(power_a=0.0), "power_a"),
    ("compression", dict(num_train_examples=0), "num_train_examples"),
])
def test_invalid_settings(name, kw, field):
    with pytest.raises(ValueError, match=field):
        get_task(name)(**kw)


def test_unknown_field_forbidden():
    with pytest.raises(pydantic.ValidationError, match="num_tokens_to_copy"):
        get_task("in-context-recall")(num_tokens_to_copy=3)


# --------------------------------------------------------------------------- metrics
def onehot_logits(preds, C):
    return torch.nn.functional.one_hot(torch.tensor(preds), C).float()


def test_metrics_hand_example():
    # targets 0 0 1 2 ign ; preds 0 1 1 3 2 ; C = 5
    targets = torch.tensor([[0, 0, 1, 2, IGN]])
    logits = onehot_logits([[0, 1, 1, 3, 2]], 5)
    assert accuracy(logits, targets).item() == pytest.approx(2 / 4)
    # class 0: 1/2, class 1: 1/1, class 2: 0/1, class 3 predicted only: 0, class 4 absent: excluded
    assert macro_accuracy(logits, targets, 5).item() == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    # torchmetrics docstring example
    assert macro_accuracy(torch.tensor([2, 1, 0, 1]), torch.tensor([2, 1, 0, 0]), 3).item() == pytest.approx(
        (0.5 + 1 + 1) / 3)


def test_metrics_streaming_equals_full():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, 7, generator=g)
    targets = torch.randint(7, (6, 10), generator=g)
    targets[torch.rand(6, 10, generator=g) < 0.4] = IGN
    acc = AccuracyCounts.zeros(7)
    for i in range(0, 6, 2):
        acc.add_(accuracy_counts(logits[i:i + 2], targets[i:i + 2], 7))
    full = finalize(accuracy_counts(logits, targets, 7))
    assert finalize(acc) == pytest.approx(full)
    assert full["acc"] == pytest.approx(accuracy(logits, targets).item())
    assert full["acc_macro"] == pytest.approx(macro_accuracy(logits, targets, 7).item())
    # brute force macro
    p, t = logits.argmax(-1).flatten().tolist(), targets.flatten().tolist()
    pairs = [(a, b) for a, b in zip(p, t) if b != IGN]
    classes = {b for _, b in pairs} | {a for a, _ in pairs}
    rec = [sum(a == b == c for a, b in pairs) / max(1, sum(b == c for _, b in pairs)) for c in classes]
    assert full["acc_macro"] == pytest.approx(sum(rec) / len(rec))


def test_metrics_empty():
    t = torch.full((2, 3), IGN)
    assert accuracy(torch.zeros(2, 3, 4), t).item() == 0.0
    assert macro_accuracy(torch.zeros(2, 3, 4), t, 4).item() == 0.0


@pytest.mark.parametrize("split", ["train", "test"])
def test_fuzzy_recall_structure_without_motif_table(split, monkeypatch):
    import mad_bench.tasks.recall as R
    monkeypatch.setattr(R, "_MAX_TABLE", 0)
    R._motif_table.cache_clear()
    try:
        test_fuzzy_recall_structure(split)
    finally:
        R._motif_table.cache_clear()
