"""Causal softmax attention for small heads: both Triton paths (short: L <= 256, one backward
program per head; tiled: flash-style) and the torch reference (SDPA) against the
position-by-position oracle (naive.py) in fp64, forward and every gradient, causal and
windowed, lengths that are not multiples of the block (and a length of 1), head dims 8, 16, 12,
contiguous inputs and strided views of a qkv projection; under vmap (members folded into the
batch) against a per-member loop; the path choice, the short path's output layout and config
override; the auto dispatch rule."""
import pytest
import torch

from mad_bench.ops.attention import causal_attention
from mad_bench.ops.attention import triton as attn_triton
from mad_bench.ops.attention.naive import naive_causal_attention
from mad_bench.ops.attention.reference import attention_torch
from mad_bench.ops.attention.triton import attention_triton, short_path

from _kernel_test_utils import as64, check, check_layer_paths, grads, leaf

TOL = 2e-5
PATHS = ["short", "tiled"]


def qkv_inputs(B, H, L, D, layout, device):
    """``(q, k, v), leaves``: q, k, v ``[B, H, L, D]`` contiguous (the leaves themselves), or
    (as the attention primitive builds them) views of one ``[B, L, 3, H, D]`` leaf."""
    if layout == "contiguous":
        made = [leaf(torch.randn(B, H, L, D, device=device)) for _ in range(3)]
        return made, made
    qkv = leaf(torch.randn(B, L, 3, H, D, device=device))
    return [qkv[:, :, i].transpose(1, 2) for i in range(3)], [qkv]


def check_grads(got, ref, L):
    """Gradients against the oracle's; at L = 1 dq and dk are zero (one key: the softmax is
    constant), so there they are held to an absolute bound instead."""
    names = ["dq", "dk", "dv"]
    for g, r, name in zip(got, ref, names):
        if L == 1 and name != "dv":
            assert g.abs().max().item() <= TOL, name
        else:
            check(g, r, TOL, [name])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", ["contiguous", "qkv-view"])
@pytest.mark.parametrize("window", [None, 5, 20])
@pytest.mark.parametrize("B,H,L,D", [(1, 2, 37, 8), (2, 1, 70, 16), (1, 1, 16, 12), (1, 2, 1, 8),
                                     (1, 1, 100, 8)])
def test_triton_attention_equals_the_oracle(device, path, layout, window, B, H, L, D):
    (q, k, v), wrt = qkv_inputs(B, H, L, D, layout, device)
    o = attention_triton(q, k, v, window, short=path == "short")
    q64, k64, v64 = as64([q, k, v])
    o64 = naive_causal_attention(q64, k64, v64, window)
    check(o, o64, TOL, ["o"])
    do = torch.randn_like(o)
    got = grads(o, wrt, do)
    if layout != "contiguous":  # the projection's gradient, split back into dq, dk, dv
        got = [got[0][:, :, i].transpose(1, 2) for i in range(3)]
    check_grads(got, grads(o64, [q64, k64, v64], do.double()), L)


def test_short_path_is_chosen_up_to_256_and_writes_o_heads_inner(device):
    assert short_path(256, 8) and short_path(128, 32) and short_path(1, 8)
    assert not short_path(257, 8) and not short_path(128, 64)
    q = torch.randn(2, 3, 20, 8, device=device)
    o = attention_triton(q, q, q)
    assert o.shape == (2, 3, 20, 8) and o.transpose(1, 2).is_contiguous()  # [B, L, H, d] memory
    with pytest.raises(ValueError, match="L <= 256"):
        attention_triton(torch.randn(1, 1, 300, 8, device=device), q, q, short=True)


@pytest.mark.parametrize("window", [None, 6])
@pytest.mark.parametrize("L", [37, 100])
@pytest.mark.parametrize("override", [{"BM_FWD": 16, "BM_BWD": 64}, {"BM_FWD": 128, "BM_BWD": 16},
                                      {"KEY_SPLIT": 2}, {"KEY_SPLIT": 2, "BM_BWD": 16}])
def test_short_path_config_override(device, override, L, window, monkeypatch):
    """Other block sizes (BM_FWD 16 takes the forward's quarter / half / full key tiles) and
    the backward's keys in two halves."""
    monkeypatch.setattr(attn_triton, "CONFIG_OVERRIDE", dict(override))
    q, k, v = (leaf(torch.randn(1, 2, L, 8, device=device)) for _ in range(3))
    o = attention_triton(q, k, v, window, short=True)
    q64, k64, v64 = as64([q, k, v])
    o64 = naive_causal_attention(q64, k64, v64, window)
    check(o, o64, TOL, ["o"])
    do = torch.randn_like(o)
    check_grads(grads(o, [q, k, v], do), grads(o64, [q64, k64, v64], do.double()), L)


def test_short_path_alignment_hint_is_the_strides_common_power_of_two():
    """ALIGN promises the compiler that every stride but the last (which must be 1) is a
    multiple of it: a wrong promise reads wrong data on a GPU (the interpreter ignores it)."""
    qkv = torch.randn(2, 5, 3, 4, 8)
    assert attn_triton._align(qkv[:, :, 0].transpose(1, 2)) == 8
    assert attn_triton._align(torch.randn(2, 4, 5, 12)) == 4
    assert attn_triton._align(torch.randn(1, 4, 5, 6)) == 2
    assert attn_triton._align(torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8).transpose(-1, -2)) == 1
    assert attn_triton._align(torch.randn(1, 1, 3, 8).expand(4, 1, 3, 8)) == 8  # a stride of 0


def test_short_path_config_override_is_checked(monkeypatch):
    monkeypatch.setattr(attn_triton, "CONFIG_OVERRIDE", {"BM_BWD": 24})
    with pytest.raises(ValueError, match="BM_BWD must be a power of two >= 16; got 24"):
        attn_triton._short_config(64, 8)
    monkeypatch.setattr(attn_triton, "CONFIG_OVERRIDE", {"KEY_SPLIT": 4})
    with pytest.raises(ValueError, match="KEY_SPLIT must be 1 or 2; got 4"):
        attn_triton._short_config(64, 8)
    monkeypatch.setattr(attn_triton, "CONFIG_OVERRIDE", {"KEY_SPLIT": 2, "BM_BWD": 32})
    assert attn_triton._short_config(128, 8)["KEY_SPLIT"] == 2
    assert attn_triton._short_config(30, 8)["KEY_SPLIT"] == 1  # 16 keys a half < 32 queries a block
    monkeypatch.setattr(attn_triton, "CONFIG_OVERRIDE", {})
    assert attn_triton._short_config(128, 8)["BM_BWD"] == 16  # the H200 sweep's best at L 128


@pytest.mark.parametrize("window", [None, 3])
def test_torch_reference_equals_the_oracle_in_fp64(window):
    q, k, v = (leaf(torch.randn(2, 2, 11, 8, dtype=torch.float64)) for _ in range(3))
    o = attention_torch(q, k, v, window)
    q2, k2, v2 = (leaf(t.detach()) for t in (q, k, v))
    ref = naive_causal_attention(q2, k2, v2, window)
    assert o.dtype == torch.float64
    check(o, ref, 1e-12, ["o"])
    do = torch.randn_like(o)
    check(grads(o, [q, k, v], do), grads(ref, [q2, k2, v2], do), 1e-10, ["dq", "dk", "dv"])


@pytest.mark.parametrize("path", PATHS)
def test_triton_attention_under_vmap_folds_the_members(device, path):
    G, B, H, L, D = 3, 1, 2, 20, 8
    q, k = leaf(torch.randn(G, B, H, L, D, device=device)), leaf(torch.randn(G, B, H, L, D, device=device))
    v = leaf(torch.randn(B, H, L, D, device=device))  # shared by the members: expanded
    fn = lambda a, b, c: attention_triton(a, b, c, None, short=path == "short")  # noqa: E731
    o = torch.func.vmap(fn, in_dims=(0, 0, None))(q, k, v)
    ref = torch.stack([naive_causal_attention(*as64([q[g], k[g], v])) for g in range(G)])
    check(o, ref, TOL, ["o"])
    do = torch.randn_like(o)
    got = grads(o, [q, k, v], do)
    q64, k64, v64 = as64([q, k, v])
    ref = torch.stack([naive_causal_attention(q64[g], k64[g], v64, None) for g in range(G)])
    check(got, grads(ref, [q64, k64, v64], do.double()), TOL, ["dq", "dk", "dv"])


def test_auto_dispatch_keeps_fp64_and_cpu_on_torch_and_checks_the_window():
    q = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    assert torch.equal(causal_attention(q, q, q), attention_torch(q, q, q))
    with pytest.raises(ValueError, match="window must be >= 1"):
        causal_attention(q, q, q, window=0)


@pytest.mark.parametrize("window", [None, 3])
def test_attention_layer_triton_path_equals_its_torch_path(device, window):
    """The primitive hands the kernel views of its qkv projection (v, and q, k after rotary) and
    reshapes o as [B, L, H * d]: the short path's strided reads and [B, L, H, d] writes."""
    from mad_bench.primitives.sequence.attention import Attention, AttentionConfig

    torch.manual_seed(0)
    ref = Attention(AttentionConfig(n_heads=4, window=window, impl="torch"), 32, 24).to(device)
    tri = Attention(AttentionConfig(n_heads=4, window=window, impl="triton"), 32, 24).to(device)
    tri.load_state_dict(ref.state_dict())
    check_layer_paths(ref, tri, torch.randn(2, 19, 32, device=device), 1e-5, 1e-4)
