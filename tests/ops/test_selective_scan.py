"""Mamba-1 selective scan (Triton) vs a step-by-step fp64 reference; fp32 inputs, tol 2e-5 rel
(measured ~3e-7 in the interpreter); fp16 inputs, tol 5e-3 (rounding of inputs/outputs).

Every Triton test runs each kernel variant (fixture ``variant``); "lane" also with smaller
chunks and channel blocks than the default, so several chunks and channel blocks (the dB / dC
partials) are crossed with masked tails."""
import pytest
import torch

from mad_bench.ops.selective_scan import selective_scan, selective_scan_naive
from mad_bench.ops.selective_scan import triton as ss_triton
from mad_bench.ops.selective_scan.reference import selective_scan as selective_scan_ref

from _kernel_test_utils import as64, check, grads, leaf, check_layer_paths

TOL = 2e-5
NAMES = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"]
VARIANTS = {
    "tile": dict(variant_fwd="tile", variant_bwd="tile"),
    "lane": dict(variant_fwd="lane", variant_bwd="lane", T=8, BLOCK_D=8),
    # the two directions share the checkpoint layout, so they mix
    "tile-fwd/lane-bwd": dict(variant_fwd="tile", variant_bwd="lane"),
    "lane-fwd/tile-bwd": dict(variant_fwd="lane", variant_bwd="tile", T=8),
}


def _use(monkeypatch, name):
    for k, v in VARIANTS[name].items():
        monkeypatch.setitem(ss_triton.CONFIG_OVERRIDE, k, v)


@pytest.fixture(params=["tile", "lane"])
def variant(request, monkeypatch):
    """The kernel variant (``CONFIG_OVERRIDE``) the test runs."""
    _use(monkeypatch, request.param)
    return request.param


def _inputs(b, d, n, l, device, dtype=torch.float32, with_D=True, with_z=True, with_bias=True):
    u = torch.randn(b, d, l, device=device)
    delta = torch.randn(b, d, l, device=device) * 0.5 + (0.0 if with_bias else 0.6)
    if not with_bias:
        delta = delta.abs()  # without softplus the step must stay positive
    A = -(torch.rand(d, n, device=device) * 2 + 0.2)
    B = torch.randn(b, n, l, device=device)
    C = torch.randn(b, n, l, device=device)
    D = torch.randn(d, device=device) if with_D else None
    z = torch.randn(b, d, l, device=device) if with_z else None
    bias = torch.randn(d, device=device) * 0.5 if with_bias else None
    ts = [u, delta, A, B, C, D, z, bias]
    return [leaf(t.to(dtype)) if t is not None else None for t in ts]


def _run(ins, ins64, softplus, tol, names=NAMES):
    y = selective_scan(*ins, delta_softplus=softplus, impl="triton")
    y64 = selective_scan_naive(*ins64, delta_softplus=softplus)
    check(y, y64, tol, ["y"])
    dy = torch.randn_like(y)
    keep = [i for i, t in enumerate(ins) if t is not None]
    g = grads(y, [ins[i] for i in keep], dy)
    g64 = grads(y64, [ins64[i] for i in keep], dy.double())
    check(g, g64, tol, [names[i] for i in keep])


@pytest.mark.parametrize("b,d,n,l", [(2, 12, 4, 19), (1, 20, 3, 37)])
@pytest.mark.parametrize("opts", ["all", "none", "z_only"])
def test_selective_scan(device, variant, b, d, n, l, opts):
    flags = dict(all=(True, True, True), none=(False, False, False), z_only=(False, True, False))[opts]
    ins = _inputs(b, d, n, l, device, with_D=flags[0], with_z=flags[1], with_bias=flags[2])
    _run(ins, as64(ins), softplus=opts == "all", tol=TOL)


@pytest.mark.parametrize("pair", ["tile-fwd/lane-bwd", "lane-fwd/tile-bwd"])
def test_selective_scan_mixed_variants(device, monkeypatch, pair):
    _use(monkeypatch, pair)
    ins = _inputs(2, 12, 4, 37, device)
    _run(ins, as64(ins), softplus=True, tol=TOL)


def test_selective_scan_unknown_variant(device, monkeypatch):
    monkeypatch.setitem(ss_triton.CONFIG_OVERRIDE, "variant_bwd", "serial")
    ins = _inputs(1, 4, 2, 5, device)
    with pytest.raises(ValueError, match="variant_bwd.*'serial'"):
        selective_scan(*ins, delta_softplus=True, impl="triton")


def test_selective_scan_softplus_no_bias_long_decay(device, variant):
    # strong decay (exp(delta A) ~ 1e-6) and weak decay in one sequence; L spans 3 chunks + tail
    ins = _inputs(1, 12, 4, 53, device, with_bias=False)
    with torch.no_grad():
        ins[1][:, :6] += 6.0
        ins[2][:4] *= 0.01
    _run(ins, as64(ins), softplus=True, tol=TOL)


def test_selective_scan_fp16(device, variant):
    ins = _inputs(2, 12, 4, 19, device, dtype=torch.float16)
    ins64 = as64(ins)
    _run(ins, ins64, softplus=True, tol=5e-3)
    y = selective_scan(*ins, delta_softplus=True, impl="triton")
    assert y.dtype == torch.float16


def test_selective_scan_time_major_views(device, variant):
    # the Mamba layer's layout: [b, l, d] tensors passed as transposed views, no copy
    b, d, n, l = 2, 12, 4, 19
    ins = _inputs(b, d, n, l, device)
    tm = [leaf(t.detach().transpose(-1, -2).contiguous()) if (t is not None and t.dim() == 3) else t
          for t in ins]
    views = [t.transpose(-1, -2) if (t is not None and t.dim() == 3) else t for t in tm]
    y = selective_scan(*views, delta_softplus=True, impl="triton")
    ins64 = as64(ins)
    y64 = selective_scan_naive(*ins64, delta_softplus=True)
    check(y, y64, TOL, ["y"])
    dy = torch.randn_like(y64, dtype=torch.float32)
    g = grads(y, [tm[0], tm[1], tm[3], tm[6]], dy)
    g64 = grads(y64, [ins64[0], ins64[1], ins64[3], ins64[6]], dy.double())
    check(g, [t.transpose(-1, -2) for t in g64], TOL, ["du", "ddelta", "dB", "dz"])


def test_references_agree():
    ins = _inputs(2, 6, 3, 21, "cpu")
    ins64 = as64(ins)
    a = selective_scan_naive(*ins64, delta_softplus=True)
    check(selective_scan_ref(*ins64, delta_softplus=True, chunk_size=8), a, 1e-12)
    # impl="torch" is the chunked reference (fp32 for fp32 inputs)
    y = selective_scan(*ins, delta_softplus=True, impl="torch")
    assert y.dtype == torch.float32
    check(y, a, TOL)


def test_mamba_layer_triton_equals_torch(device, variant):
    from mad_bench.configs.primitives.mamba import MambaConfig
    from mad_bench.primitives.sequence.mamba import Mamba

    torch.manual_seed(0)
    ref = Mamba(MambaConfig(impl="torch"), 12, 64).to(device)
    tri = Mamba(MambaConfig(impl="triton"), 12, 64).to(device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 19, 12, device=device)
    check_layer_paths(ref, tri, x, 1e-5, 1e-4)


def _member_inputs(G, r, d, n, l, device):
    """Per-member A, D, delta_bias ([G, ...]) and activations of G * r batch rows."""
    ins = _inputs(G * r, d, n, l, device)
    A = leaf(-(torch.rand(G, d, n, device=device) * 2 + 0.2))
    D = leaf(torch.randn(G, d, device=device))
    bias = leaf(torch.randn(G, d, device=device) * 0.5)
    return ins[0], ins[1], A, ins[3], ins[4], D, ins[6], bias


def _per_member_naive(u, delta, A, B, C, D, z, bias, G):
    r = u.shape[0] // G
    return torch.cat([selective_scan_naive(u[g * r:(g + 1) * r], delta[g * r:(g + 1) * r], A[g],
                                           B[g * r:(g + 1) * r], C[g * r:(g + 1) * r], D[g],
                                           z[g * r:(g + 1) * r], bias[g], delta_softplus=True)
                      for g in range(G)])


def test_selective_scan_per_member_params(device, variant):
    # A [G, d, n], D and delta_bias [G, d]: batch row i uses member i // (b / G); L 19 = 16 + 3
    G = 2
    ins = _member_inputs(G, 1, 6, 2, 19, device)
    ins64 = as64(ins)
    y = selective_scan(*ins, delta_softplus=True, impl="triton")
    y64 = _per_member_naive(*ins64, G)
    check(y, y64, TOL, ["y"])
    dy = torch.randn_like(y)
    check(grads(y, ins, dy), grads(y64, ins64, dy.double()), TOL, NAMES)
    # the torch path takes the same arguments (one reference call per member)
    check(selective_scan(*ins64, delta_softplus=True, impl="torch"), y64, 1e-12, ["y torch"])


def test_selective_scan_vmapped_members_one_launch(device, variant, monkeypatch):
    # the engine's case: parameters vmapped over members -> one folded launch per direction
    from torch.func import vmap

    calls = []
    fwd = ss_triton._ss_fwd
    monkeypatch.setattr(ss_triton, "_ss_fwd", lambda *a, **k: calls.append(1) or fwd(*a, **k))
    G, r = 2, 2
    u, delta, A, B, C, D, z, bias = _member_inputs(G, r, 4, 2, 19, device)
    y = vmap(lambda uu, dd, aa, bb, cc, DD, zz, bi: selective_scan(uu, dd, aa, bb, cc, DD, zz, bi, True, impl="triton"))(
        *[t.view(G, r, *t.shape[1:]) if t.shape[0] == G * r else t for t in (u, delta, A, B, C, D, z, bias)])
    assert len(calls) == 1
    ins64 = as64([u, delta, A, B, C, D, z, bias])
    y64 = _per_member_naive(*ins64, G)
    check(y.reshape(G * r, *y.shape[2:]), y64, TOL, ["y"])
    dy = torch.randn_like(y64, dtype=torch.float32)
    ins = [u, delta, A, B, C, D, z, bias]
    check(grads(y, ins, dy.view_as(y)), grads(y64, ins64, dy.double()), TOL, NAMES)


def test_lane_variant_refuses_int32_overflow():
    # the "lane" kernels take int32 offsets inside a chunk: a channel stride that overflows them
    # (channel-major rows of 2**31 / 16 steps, no memory behind the meta tensor) is refused
    cfg = dict(T=8, variant_fwd="tile", variant_bwd="lane")
    u = torch.empty_strided((1, 16, 2**27), (16 * 2**27, 2**27, 1), device="meta")
    ss_triton._check_chunk_offsets(cfg, "fwd", u=u)  # the tile forward has no such limit
    with pytest.raises(ValueError, match="variant 'lane': u"):
        ss_triton._check_chunk_offsets(cfg, "bwd", u=u)
    ss_triton._check_chunk_offsets(cfg, "bwd", u=u[:, :15])
