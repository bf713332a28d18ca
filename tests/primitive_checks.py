"""Checks shared by the primitive tests (imported by module name: tests/ is on sys.path through
its conftest).

``randomise`` gives a layer random weights everywhere before a step-vs-parallel or kernel check:
many inits are zero or tiny (gates, biases, norm weights), and a path that carries nothing passes
any comparison. The init is a parameter because the families need different scales (a norm weight
must stay near 1, an SSM's ``A_log`` must stay a decay); the inits below are the ones in use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from mad_bench import build_model, load_spec
from mad_bench.primitives import REGISTRY

Init = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``init(p, z) -> new value of p``, ``z`` a standard-normal draw of ``p``'s shape."""


def randomise(module: torch.nn.Module, init: Init, *, skip: Iterable[str] = (), seed: int = 1) -> None:
    """Set every parameter of ``module`` (by ``named_parameters`` order, names in ``skip`` left
    alone and drawing nothing) to ``init(p, z)``, the draws from one generator seeded ``seed``:
    the same module gets the same weights on every run."""
    skip = set(skip)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name not in skip:
                p.copy_(init(p, torch.randn(p.shape, generator=g)))


def add_noise(std: float) -> Init:
    """The init plus ``N(0, std^2)`` noise."""
    return lambda p, z: p + std * z


def add_fan_in_noise(std: float) -> Init:
    """The init plus noise of standard deviation ``std / sqrt(fan-in)`` (the last dim): weights
    of every size move the output by about the same amount."""
    return lambda p, z: p + z * std / math.sqrt(max(p.shape[-1], 1))


def redraw(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A fresh draw: matrices ``N(0, 0.3^2)``, vectors (norm weights, biases) ``N(1, 0.5^2)``."""
    return z * 0.3 if p.dim() > 1 else z * 0.5 + 1.0


def run_steps(m, x: torch.Tensor) -> torch.Tensor:
    """``m.step`` token by token from ``m.init_state``: the ``[B, L, D]`` outputs. Asserts that a
    step leaves its input state as it was (the new state is a new object)."""
    state = m.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        before = _snapshot(state)
        y, new_state = m.step(x[:, t], state)
        assert _same(before, state), f"step mutated its input state at t={t}"
        state = new_state
        ys.append(y)
    return torch.stack(ys, 1)


def _snapshot(state):
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _snapshot(v) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(_snapshot(v) for v in state)
    return state


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return all(_same(x, y) for x, y in zip(a, b))
    return a == b


def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[B, L, H * d] -> [B, H, L, d]``."""
    return t.view(t.shape[0], t.shape[1], n_heads, -1).transpose(1, 2)


def l2_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` in the Euclidean norm (``b`` the reference)."""
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |b|`` (``b`` the reference)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def assert_steps_equal_parallel(m, x: torch.Tensor, err=l2_rel_err, tol: float = 1e-4) -> None:
    """Stepping through ``x`` token by token (:func:`run_steps`) reproduces the parallel form:
    same shape, finite, ``err(steps, parallel) < tol``."""
    with torch.no_grad():
        y, ys = m(x), run_steps(m, x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    e = err(ys, y)
    assert e < tol, f"step vs parallel: {err.__name__} {e:.3g} >= {tol:g}"


def assert_causal(y: torch.Tensor, x: torch.Tensor, t: int = 5) -> None:
    """``y = m(x)`` at position ``t`` has no gradient from inputs after ``t`` (up to FFT
    round-off); keeps the graph for a backward pass after it."""
    gx = torch.autograd.grad(y[:, t].sum(), x, retain_graph=True)[0]
    assert gx[:, t + 1:].abs().max() <= 1e-6 * gx[:, :t + 1].abs().max()


def assert_every_parameter_gets_a_gradient(m: torch.nn.Module) -> None:
    """After a backward pass: a nonzero gradient on every parameter (a missing one names it)."""
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def assert_defaults_build(name: str, d_model: int) -> None:
    """The registered primitive's default config passes its check at ``d_model`` and runs."""
    entry = REGISTRY[name]
    cfg = entry.config()
    cfg.check(d_model)
    m = entry.module(cfg, d_model, 16)
    assert m(torch.randn(1, 6, d_model)).shape == (1, 6, d_model)


def assert_shipped_spec_runs(name: str) -> None:
    """``architectures/<name>.yaml`` loads and its model maps tokens to logits."""
    model = build_model(load_spec(f"architectures/{name}.yaml"), vocab_size=11, max_len=16)
    assert model(torch.randint(0, 11, (1, 16))).shape == (1, 16, 11)


@dataclass(frozen=True)
class GenericChecks:
    """How tests/primitives/test_common.py checks the ``CASES`` of one per-primitive test file
    (every case of a file alike). Inputs are ``[batch, seq_len, d_model]`` standard-normal draws
    after ``torch.manual_seed(0)`` and the layer's construction.

    Step vs parallel: ``.eval()`` if ``eval``, :func:`randomise` with ``init`` (``skip`` left
    alone) if ``init`` is set, then :func:`assert_steps_equal_parallel` with ``err`` on a batch of
    ``step_batch``. Gradients (batch 2): the squared output's sum backpropagates to every
    parameter; with ``causal`` the output is also causal in the input, with ``flops`` the layer
    reports ``flops_per_token > mixing_flops_per_token > 0``. ``registered``: the registry name
    whose defaults must build at every width; ``shipped_spec``: the ``architectures/`` spec."""

    d_model: int
    seq_len: int
    step_batch: int
    eval: bool = False
    init: Optional[Init] = None
    skip: frozenset = frozenset()
    err: Callable[[torch.Tensor, torch.Tensor], float] = l2_rel_err
    causal: bool = False
    flops: bool = False
    registered: Optional[str] = None
    shipped_spec: Optional[str] = None
