"""The generic checks, once, over the cases of every per-primitive test file: a file that
defines ``CASES`` (name -> layer factory) and ``CHECKS`` (a :class:`GenericChecks`) is checked
here; its own file keeps only what is specific to its primitive."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

from primitive_checks import (
    GenericChecks, assert_causal, assert_defaults_build, assert_every_parameter_gets_a_gradient,
    assert_shipped_spec_runs, assert_steps_equal_parallel, randomise,
)


def _checked_modules():
    """The sibling test modules that define ``CASES``, by file name."""
    found = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("test_") and info.name != Path(__file__).stem:
            module = importlib.import_module(f"{__package__}.{info.name}")
            if hasattr(module, "CASES"):
                if not isinstance(getattr(module, "CHECKS", None), GenericChecks):
                    raise TypeError(f"{module.__name__} defines CASES but no CHECKS = GenericChecks(...)")
                found.append(module)
    return found


def _all_cases(modules):
    """``name -> (factory, module)`` over ``modules``; a name must be unique (it is the test id)."""
    cases = {}
    for module in modules:
        for name, build in module.CASES.items():
            if name in cases:
                raise ValueError(f"case {name!r} of {module.__name__} is also a case of "
                                 f"{cases[name][1].__name__}: rename one")
            cases[name] = (build, module)
    return cases


MODULES = _checked_modules()
CASES = _all_cases(MODULES)
WIDTHS = [32, 64, 128, 256, 512]
REGISTERED = [m.CHECKS.registered for m in MODULES if m.CHECKS.registered]
SHIPPED = [m.CHECKS.shipped_spec for m in MODULES if m.CHECKS.shipped_spec]


def _build(name: str):
    """Case ``name``'s layer, built after ``torch.manual_seed(0)``, and its file's checks."""
    build, module = CASES[name]
    torch.manual_seed(0)
    return build(), module.CHECKS


@pytest.mark.parametrize("name", CASES)
def test_step_equals_parallel(name):
    m, c = _build(name)
    if c.eval:
        m.eval()
    if c.init is not None:
        randomise(m, c.init, skip=c.skip)
    assert_steps_equal_parallel(m, torch.randn(c.step_batch, c.seq_len, c.d_model), c.err)


@pytest.mark.parametrize("name", CASES)
def test_every_parameter_gets_a_gradient(name):
    m, c = _build(name)
    x = torch.randn(2, c.seq_len, c.d_model, requires_grad=c.causal)
    y = m(x)
    if c.causal:
        assert_causal(y, x)
    y.pow(2).sum().backward()
    assert_every_parameter_gets_a_gradient(m)
    if c.flops:
        assert m.flops_per_token(c.seq_len) > m.mixing_flops_per_token(c.seq_len) > 0


@pytest.mark.parametrize("d_model", WIDTHS)
@pytest.mark.parametrize("name", REGISTERED)
def test_defaults_build_at_every_width(name, d_model):
    assert_defaults_build(name, d_model)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_loads_and_runs(name):
    assert_shipped_spec_runs(name)
