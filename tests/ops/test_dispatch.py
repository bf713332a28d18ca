import pytest
import torch

from mad_bench.ops.dispatch import interpreter_active, resolve_impl, triton_available


def test_torch_always_torch():
    assert resolve_impl("torch", torch.zeros(2)) == "torch"


def test_bad_impl():
    with pytest.raises(ValueError):
        resolve_impl("cuda", torch.zeros(2))


def test_auto_cpu(monkeypatch):
    x = torch.zeros(2)
    monkeypatch.delenv("MAD_BENCH_FORCE_TRITON", raising=False)
    assert resolve_impl("auto", x) == "torch"
    monkeypatch.setenv("MAD_BENCH_FORCE_TRITON", "1")
    expect = "triton" if (triton_available() and interpreter_active() and
                          __import__("os").environ.get("TRITON_INTERPRET") == "1") else "torch"
    assert resolve_impl("auto", x) == expect


def test_triton_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        resolve_impl("triton", torch.zeros(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_cuda():
    assert resolve_impl("auto", torch.zeros(2, device="cuda")) == "triton"


def test_dispatch_does_not_look_triton_up_at_call_time(monkeypatch):
    """Layers dispatch inside the compiled step; dynamo refuses importlib's lookups (on torch
    2.11 a ``find_spec`` there broke deltanet's graph), so the answer is decided at import."""
    import importlib.util

    def refuse(*a, **k):
        raise AssertionError("importlib.util.find_spec called at dispatch time")

    monkeypatch.setattr(importlib.util, "find_spec", refuse)
    triton_available()
    for impl in ("auto", "torch"):
        resolve_impl(impl, torch.zeros(1))
