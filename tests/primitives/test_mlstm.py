"""mLSTM (xLSTM): a matrix memory with exponential input gates, stabilised, computed in chunks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mad_bench.ops.mlstm import mlstm_chunked
from mad_bench.primitives.sequence.mlstm import MLSTM, MLSTMConfig

from primitive_checks import (
    GenericChecks, add_fan_in_noise, assert_steps_equal_parallel, max_rel_err, randomise,
)

D_MODEL, L = 32, 17

CASES = {
    "mlstm-chunk-4": lambda: MLSTM(MLSTMConfig(chunk_size=4), D_MODEL, 64),
    "mlstm-no-conv": lambda: MLSTM(MLSTMConfig(d_conv=0), D_MODEL, 64),
}
CHECKS = GenericChecks(d_model=D_MODEL, seq_len=L, step_batch=3, init=add_fan_in_noise(0.5),
                       err=max_rel_err, flops=True)


def naive_mlstm(q, k, v, i_gate, log_f):
    """Unstabilised mLSTM recurrence in float64: h = C~ q / max(|n~ q|, 1)."""
    b, h, l, dk = q.shape
    C = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64)
    n = torch.zeros(b, h, dk, dtype=torch.float64)
    out = []
    for t in range(l):
        f, i = log_f[:, :, t].exp()[..., None], i_gate[:, :, t].exp()[..., None]
        C = f[..., None] * C + i[..., None] * k[:, :, t, :, None] * v[:, :, t, None, :]
        n = f * n + i * k[:, :, t]
        num = (q[:, :, t, :, None] * C).sum(-2)
        den = (q[:, :, t] * n).sum(-1).abs().clamp(min=1.0)
        out.append(num / den[..., None])
    return torch.stack(out, 2)


def test_mlstm_by_hand():
    # one head, d_h 1, q = k = 1, f = 1/2, i = 1/4: C~ = 1/2, 9/4; n~ = 1/4, 3/8
    # h_1 = 0.5 / max(0.25, 1) = 0.5 ; h_2 = (0.25 + 2) / max(0.375, 1) = 2.25
    q = k = torch.ones(1, 1, 2, 1)
    v = torch.tensor([2.0, 8.0]).view(1, 1, 2, 1)
    i_gate = torch.full((1, 1, 2), math.log(0.25))
    log_f = torch.full((1, 1, 2), math.log(0.5))
    for chunk in (1, 2):
        h, _ = mlstm_chunked(q, k, v, i_gate, log_f, chunk_size=chunk)
        torch.testing.assert_close(h.flatten(), torch.tensor([0.5, 2.25]))
    # large input gates: h = C~ q / |n~ q| = 8 at t=2 ... (8 e^20 + 2 e^10 / 2) / (e^20 + e^10 / 2)
    i_big = torch.tensor([10.0, 20.0]).view(1, 1, 2)
    h, _ = mlstm_chunked(q, k, v, i_big, log_f, chunk_size=1)
    e = math.exp(-10)
    torch.testing.assert_close(h.flatten(), torch.tensor([2.0, (8 + e) / (1 + 0.5 * e)]))


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_mlstm_chunked_matches_loop(chunk):
    torch.manual_seed(0)
    b, h, l, d = 2, 3, 19, 4
    q, k, v = (torch.randn(b, h, l, d, dtype=torch.float64) for _ in range(3))
    i_gate = torch.randn(b, h, l, dtype=torch.float64) * 3
    log_f = F.logsigmoid(torch.randn(b, h, l, dtype=torch.float64) * 3)
    out, _ = mlstm_chunked(q, k, v, i_gate, log_f, chunk_size=chunk)
    ref = naive_mlstm(q, k, v, i_gate, log_f)
    torch.testing.assert_close(out, ref.float(), rtol=1e-4, atol=1e-5)


def test_mlstm_stable_with_huge_gates():
    torch.manual_seed(0)
    m = MLSTM(MLSTMConfig(chunk_size=4), D_MODEL, 64)
    randomise(m, add_fan_in_noise(0.5))
    with torch.no_grad():
        m.gates.bias[:4] += 200.0  # exp(200) overflows fp32 without the stabiliser
    x = torch.randn(2, L, D_MODEL)
    y = m(x)
    assert torch.isfinite(y).all()
    assert_steps_equal_parallel(m, x, max_rel_err)


def test_bf16_autocast_keeps_the_fp32_gradient_and_vmap_agrees_with_the_loop():
    """The mixer computes in fp32 under autocast. With bf16 projections the gradient of
    architectures/mlstm.yaml at initialisation on MAD's selective-copying baseline was rounding:
    qk.weight's gradient norm 0.35x the fp32 one, and the engine's vmapped ensemble and its
    per-member loop disagreed by 4x (the engine's check failed on the GPU too)."""
    from mad_bench import load_spec
    from mad_bench.suite import expand, load_suite
    from mad_bench.train.ensemble import EngineOptions, build_ensemble

    spec = load_spec("architectures/mlstm.yaml")
    setting = expand(load_suite("mad"), ["selective-copying"], baseline_only=True)[0]
    ts = setting.task_setting.model_copy(update={"num_train_examples": 8, "num_test_examples": 8})
    grads, checks = {}, {}
    for precision in ("fp32", "bf16"):
        cfgs = [setting.training.model_copy(update={"lr": lr, "precision": precision}) for lr in (1e-4, 1e-3)]
        with torch.random.fork_rng():
            ens = build_ensemble(spec, ts, cfgs, torch.device("cpu"),
                                 options=EngineOptions(mode="vmap", probe=False, capture=False, compile="off"))
        x, y = ens.x_train[:8], ens.y_train[:8]
        checks[precision] = ens.compare_modes(x, y)
        ens.model.eval()
        total, _, _ = ens._losses(x, y, mode="loop")
        grads[precision] = torch.autograd.grad(total.sum(), ens.leaves, allow_unused=True)
        names = ens.names
    assert checks["bf16"].ok, checks["bf16"].describe()
    for name, a, b in zip(names, grads["bf16"], grads["fp32"]):
        if a is None:
            continue
        err = ((a.float() - b).norm() / b.norm().clamp(min=1e-3)).item()
        assert err < 0.1, f"{name}: bf16 gradient {err:.3g} from fp32"
