"""DeltaNet delta rule (Triton) vs the step-by-step fp64 recurrence; fp32 inputs, tol 2e-5 rel
(measured ~3e-7 in the interpreter); fp16 inputs, tol 5e-3."""
import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.delta_rule import chunk_delta_rule
from mad_bench.ops.delta_rule.reference import chunk_delta_rule as delta_rule_ref
from mad_bench.ops.delta_rule.reference import recurrent_delta_rule

from _kernel_test_utils import as64, check, grads, leaf, check_layer_paths

TOL = 2e-5


def _inputs(B, H, L, K, V, device, dtype=torch.float32, with_s0=False):
    q = torch.randn(B, H, L, K, device=device)
    k = F.normalize(torch.randn(B, H, L, K, device=device), dim=-1)
    v = torch.randn(B, H, L, V, device=device)
    beta = torch.rand(B, H, L, device=device)
    s0 = torch.randn(B, H, K, V, device=device) * 0.5 if with_s0 else None
    return [leaf(t.to(dtype)) if t is not None else None for t in (q, k, v, beta, s0)]


def _run(ins, scale, final, tol):
    q, k, v, beta, s0 = ins
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    out = chunk_delta_rule(q, k, v, beta, scale, s0, output_final_state=final, impl="triton")
    ins64 = as64(ins)
    o64, S64 = recurrent_delta_rule(*ins64[:4], scale=scale, initial_state=ins64[4])
    outs = list(out) if final else [out]
    outs64 = [o64, S64] if final else [o64]
    check(outs, outs64, tol, ["o", "S_L"])
    gouts = [torch.randn_like(o, dtype=torch.float32) for o in outs]
    keep = [i for i, t in enumerate(ins) if t is not None]
    g = grads(outs, [ins[i] for i in keep], [go.to(o.dtype) for go, o in zip(gouts, outs)])
    g64 = grads(outs64, [ins64[i] for i in keep], [go.double() for go in gouts])
    check(g, g64, tol, [["dq", "dk", "dv", "dbeta", "dS0"][i] for i in keep])


@pytest.mark.parametrize("B,H,L,K,V", [(2, 2, 19, 16, 16), (1, 3, 37, 12, 20)])
@pytest.mark.parametrize("with_s0,final", [(False, False), (True, True)])
def test_delta_rule(device, B, H, L, K, V, with_s0, final):
    _run(_inputs(B, H, L, K, V, device, with_s0=with_s0), 0.7, final, TOL)


@pytest.mark.parametrize("L,K,V", [(131, 8, 40), (261, 64, 64)])
def test_delta_rule_checkpoint_restarts_and_value_split(device, L, K, V):
    # L > the checkpoint interval (64; 256 for K*V >= 4096) and V over two value blocks (32 each
    # in the interpreter config)
    _run(_inputs(1, 1, L, K, V, device, with_s0=True), None, True, TOL)


def test_delta_rule_fp16_and_strided(device):
    # [B, L, H, K] tensors seen as [B, H, L, K] views (as in the DeltaNet layer)
    B, H, L, K, V = 1, 2, 23, 16, 16
    ins = _inputs(B, H, L, K, V, device, dtype=torch.float16)
    base = [leaf(t.detach().transpose(1, 2).contiguous()) for t in ins[:4]]
    views = [t.transpose(1, 2) for t in base]
    o = chunk_delta_rule(*views, impl="triton")
    assert o.dtype == torch.float16
    q64, k64, v64, b64 = as64(base)
    o64, _ = recurrent_delta_rule(q64.transpose(1, 2), k64.transpose(1, 2), v64.transpose(1, 2),
                                  b64.transpose(1, 2), scale=K**-0.5)
    check(o, o64, 5e-3, ["o"])
    do = torch.randn_like(o)
    check(grads(o, base, do), grads(o64, [q64, k64, v64, b64], do.double()), 5e-3,
          ["dq", "dk", "dv", "dbeta"])


def test_torch_impl_is_the_chunked_reference():
    ins = [t.detach() if t is not None else None for t in _inputs(1, 2, 21, 8, 8, "cpu", with_s0=True)]
    o, S = chunk_delta_rule(*ins[:4], 0.5, ins[4], True, impl="torch")
    o2, S2 = delta_rule_ref(*ins[:4], 0.5, 64, ins[4], True)
    assert torch.equal(o, o2) and torch.equal(S, S2)
    o64, S64 = recurrent_delta_rule(*as64(ins[:4]), scale=0.5, initial_state=ins[4].double())
    check([o, S], [o64, S64], 1e-5)


def test_deltanet_layer_triton_equals_torch(device):
    from mad_bench.configs.primitives.deltanet import DeltaNetConfig
    from mad_bench.primitives.sequence.deltanet import DeltaNet

    torch.manual_seed(0)
    ref = DeltaNet(DeltaNetConfig(impl="torch", n_heads=2), 24, 64).to(device)
    tri = DeltaNet(DeltaNetConfig(impl="triton", n_heads=2), 24, 64).to(device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 19, 24, device=device)
    check_layer_paths(ref, tri, x, 1e-5, 1e-4)
