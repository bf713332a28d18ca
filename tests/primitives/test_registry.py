"""The primitives are registered under their spec names, as sequence or channel mixers."""
from mad_bench.primitives.registry import REGISTRY


def test_sequence_mixers_are_registered():
    for name in ("mamba", "mamba2", "mlstm", "slstm", "hyena", "short-conv", "rwkv6", "lstm", "gru"):
        assert name in REGISTRY and REGISTRY[name].kind == "sequence", name


def test_channel_mixers_are_registered():
    for name in ("moe",):
        assert name in REGISTRY and REGISTRY[name].kind == "channel", name
