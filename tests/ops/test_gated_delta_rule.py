"""Gated delta rule (Triton, ``mad_bench.ops.gated_delta_rule``) vs the step-by-step fp64
recurrence; fp32 inputs, tol 2e-5 rel on the output, the final state and the gradients of q, k,
v, beta, log_g and the initial state; the chunked Triton kernels (chunks of 16 under the
interpreter, 32 / 64 forced), the recurrent ones, and the torch path (chunked form)."""
import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.gated_delta_rule import gated_delta_rule, recurrent_gated_delta_rule

from _kernel_test_utils import as64, check, check_layer_paths, grads, leaf

TOL = 2e-5
NAMES = ["dq", "dk", "dv", "dbeta", "dlog_g", "dS0"]


def _inputs(B, H, L, K, V, with_s0=False, strong_decay=False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, L, K, generator=g)
    k = F.normalize(torch.randn(B, H, L, K, generator=g), dim=-1)
    v = torch.randn(B, H, L, V, generator=g)
    beta = torch.rand(B, H, L, generator=g)
    log_g = -torch.rand(B, H, L, generator=g) * (30.0 if strong_decay else 0.5)
    s0 = torch.randn(B, H, K, V, generator=g) * 0.5 if with_s0 else None
    return [leaf(t) if t is not None else None for t in (q, k, v, beta, log_g, s0)]


def _run(ins, scale, final, impl, tol, device="cpu", **triton_kw):
    """``impl`` through the public op, or with ``triton_kw`` the Triton function directly."""
    ins = [leaf(t.detach().to(device)) if t is not None else None for t in ins]
    q, k, v, beta, log_g, s0 = ins
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if triton_kw:
        from mad_bench.ops.gated_delta_rule.triton import gated_delta_rule_triton

        out = gated_delta_rule_triton(q, k, v, beta, log_g, scale, s0, **triton_kw)
        out = out if final else out[0]
    else:
        out = gated_delta_rule(q, k, v, beta, log_g, scale, s0, output_final_state=final,
                               chunk_size=8, impl=impl)
    ins64 = as64(ins)
    o64, S64 = recurrent_gated_delta_rule(*ins64[:5], scale=scale, initial_state=ins64[5])
    outs = list(out) if final else [out]
    outs64 = [o64, S64] if final else [o64]
    check(outs, outs64, tol, ["o", "S_L"])
    gouts = [torch.randn_like(o) for o in outs]
    keep = [i for i, t in enumerate(ins) if t is not None]
    g = grads(outs, [ins[i] for i in keep], gouts)
    g64 = grads(outs64, [ins64[i] for i in keep], [go.double() for go in gouts])
    check(g, g64, tol, [NAMES[i] for i in keep])


@pytest.mark.parametrize("B,H,L,K,V", [(2, 2, 19, 16, 16), (1, 1, 71, 8, 40)])
@pytest.mark.parametrize("with_s0,final", [(False, False), (True, True)])
def test_triton_matches_fp64_recurrence(device, B, H, L, K, V, with_s0, final):
    # (1, 1, 71, 8, 40): five chunks of 16 (the last partial) and two value blocks of 32
    _run(_inputs(B, H, L, K, V, with_s0), 0.7, final, "triton", TOL, device)


@pytest.mark.parametrize("block_size", [32, 64])
def test_triton_chunked_longer_chunks(device, block_size):
    # the triangular inverse by doubling over 32 / 64 rows; L = 71: a partial last chunk
    _run(_inputs(1, 1, 71, 12, 16, with_s0=True), 0.6, True, "triton", TOL, device,
         block_size=block_size)


def test_triton_recurrent_path(device):
    # the step-by-step kernels (chunked=False): two checkpoint blocks, two value blocks
    _run(_inputs(1, 1, 37, 8, 40, with_s0=True), 0.7, True, "triton", TOL, device, chunked=False)


def test_triton_strong_decay_has_no_blowup(device):
    # decays down to exp(-30): the backward recomputes states, it never divides by the decay
    _run(_inputs(1, 2, 40, 8, 8, with_s0=True, strong_decay=True), None, True, "triton", TOL, device)


@pytest.mark.parametrize("strong", [False, True])
def test_torch_chunked_form_matches_fp64_recurrence(strong):
    _run(_inputs(2, 2, 21, 8, 6, with_s0=True, strong_decay=strong), 0.5, True, "torch", 1e-5)


def test_zero_decay_is_the_delta_rule():
    """log_g = 0 reduces to DeltaNet's (ungated) delta rule."""
    from mad_bench.ops.delta_rule.reference import recurrent_delta_rule

    q, k, v, beta, _, _ = (t.detach() if t is not None else None for t in _inputs(1, 2, 13, 4, 4))
    o = gated_delta_rule(q, k, v, beta, torch.zeros_like(beta), 0.5, impl="torch")
    o2, _ = recurrent_delta_rule(q, k, v, beta, scale=0.5)
    torch.testing.assert_close(o, o2, rtol=1e-5, atol=1e-6)


def test_hand_checked_two_steps():
    """K = V = 1: S_1 = b1 v1 k1; S_2 = g2 (1 - b2 k2^2) S_1 + b2 k2 v2; o_t = S_t q_t."""
    q = torch.tensor([2.0, 3.0]).view(1, 1, 2, 1)
    k = torch.tensor([1.0, 0.5]).view(1, 1, 2, 1)
    v = torch.tensor([4.0, -2.0]).view(1, 1, 2, 1)
    beta = torch.tensor([0.5, 1.0]).view(1, 1, 2)
    log_g = torch.log(torch.tensor([0.9, 0.5])).view(1, 1, 2)
    s1 = 0.5 * 4.0 * 1.0
    s2 = 0.5 * (1 - 1.0 * 0.25) * s1 + 1.0 * 0.5 * -2.0
    o = gated_delta_rule(q, k, v, beta, log_g, 1.0, impl="torch")
    torch.testing.assert_close(o.flatten(), torch.tensor([2 * s1, 3 * s2]))


def test_gated_deltanet_layer_triton_equals_torch(device):
    from mad_bench.configs.primitives.gated_deltanet import GatedDeltaNetConfig
    from mad_bench.primitives.sequence.gated_deltanet import GatedDeltaNet

    torch.manual_seed(0)
    ref = GatedDeltaNet(GatedDeltaNetConfig(impl="torch", chunk_size=8), 32, 64).to(device)
    tri = GatedDeltaNet(GatedDeltaNetConfig(impl="triton"), 32, 64).to(device)
    tri.load_state_dict(ref.state_dict())
    check_layer_paths(ref, tri, torch.randn(2, 19, 32, device=device), 1e-5, 1e-4)
