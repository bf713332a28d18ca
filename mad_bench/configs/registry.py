"""The primitive names and their configs, without torch: what spec validation needs.

Adding a primitive: its config (``configs/primitives/<name>.py``) and a line below; its module
(``primitives/{sequence,channel}/<name>.py``, decorated ``@register(Config)``) and its import
line in ``primitives/__init__.py``. The module registry checks at import that both list the
same names.
"""
from __future__ import annotations

import difflib

from .primitives.attention import AttentionConfig
from .primitives.base import Kind, PrimitiveConfig
from .primitives.base_conv import BaseConvConfig
from .primitives.based import BasedConfig
from .primitives.deltanet import DeltaNetConfig
from .primitives.gated_deltanet import GatedDeltaNetConfig
from .primitives.gla import GatedLinearAttentionConfig
from .primitives.gru import GRUConfig
from .primitives.h3 import H3Config
from .primitives.hyena import HyenaConfig
from .primitives.linear_attention import LinearAttentionConfig
from .primitives.lstm import LSTMConfig
from .primitives.mamba import MambaConfig
from .primitives.mamba2 import Mamba2Config
from .primitives.mlp import MLPConfig
from .primitives.mlstm import MLSTMConfig
from .primitives.moe import MoEConfig
from .primitives.retnet import RetNetConfig
from .primitives.rwkv6 import RWKV6Config
from .primitives.short_conv import ShortConvConfig
from .primitives.sliding_window_attention import SlidingWindowAttentionConfig
from .primitives.slstm import SLSTMConfig
from .primitives.swiglu import SwiGLUConfig


def primitive_name(config: type[PrimitiveConfig]) -> str:
    """A config's primitive name: the default of its ``type`` literal."""
    name = config.model_fields["type"].default
    if not isinstance(name, str):
        raise TypeError(f"{config.__name__}.type needs a string default (the primitive name)")
    return name


def _by_name(*configs: type[PrimitiveConfig]) -> dict[str, type[PrimitiveConfig]]:
    out: dict[str, type[PrimitiveConfig]] = {}
    for config in configs:
        name = primitive_name(config)
        if name in out:
            raise ValueError(f"primitive {name!r} has two configs: {out[name].__name__}, "
                             f"{config.__name__}")
        out[name] = config
    return out


CONFIGS: dict[str, type[PrimitiveConfig]] = _by_name(
    # sequence mixers
    AttentionConfig, MambaConfig, Mamba2Config, MLSTMConfig, SLSTMConfig, GRUConfig, HyenaConfig,
    LSTMConfig, RWKV6Config, ShortConvConfig, DeltaNetConfig, GatedLinearAttentionConfig,
    LinearAttentionConfig, RetNetConfig, BaseConvConfig, BasedConfig, GatedDeltaNetConfig,
    H3Config, SlidingWindowAttentionConfig,
    # channel mixers
    MLPConfig, MoEConfig, SwiGLUConfig,
)


def suggest(name: str) -> str:
    """' (did you mean 'mamba'?)' for a near miss, else the list of valid names."""
    close = difflib.get_close_matches(name, list(CONFIGS), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid: {', '.join(sorted(CONFIGS))})"


def get_config(name: str) -> type[PrimitiveConfig]:
    if name not in CONFIGS:
        raise KeyError(f"unknown primitive {name!r}{suggest(name)}")
    return CONFIGS[name]


def kind_of(name: str) -> Kind:
    return get_config(name).kind


def list_primitives() -> dict[str, list[str]]:
    """Primitive names by kind, in registry order."""
    out: dict[str, list[str]] = {"sequence": [], "channel": []}
    for name, config in CONFIGS.items():
        out[config.kind].append(name)
    return out
