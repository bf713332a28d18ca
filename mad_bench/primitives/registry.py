"""The primitive registry: name -> (config class, module class, kind).

Adding a primitive is one file that defines a config and a module decorated with
``@register(Config)``, plus its import line in ``mad_bench/primitives/__init__.py``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .base import ChannelMixer, Kind, Primitive, PrimitiveConfig, SequenceMixer


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind
    config: type[PrimitiveConfig]
    module: type[Primitive]

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0] if self.module.__doc__ else ""


REGISTRY: dict[str, Entry] = {}


def register(config: type[PrimitiveConfig]):
    """Class decorator: registers a module under its config's ``type`` literal."""
    name = config.model_fields["type"].default
    if not isinstance(name, str):
        raise TypeError(f"{config.__name__}.type needs a string default (the primitive name)")

    def decorate(module: type[Primitive]) -> type[Primitive]:
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} registered twice")
        if issubclass(module, SequenceMixer):
            kind: Kind = "sequence"
        elif issubclass(module, ChannelMixer):
            kind = "channel"
        else:
            raise TypeError(f"{module.__name__} must subclass SequenceMixer or ChannelMixer")
        REGISTRY[name] = Entry(name, kind, config, module)
        return module

    return decorate


def suggest(name: str) -> str:
    """' (did you mean 'mamba'?)' for a near miss, else the list of valid names."""
    close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid: {', '.join(sorted(REGISTRY))})"


def get(name: str) -> Entry:
    if name not in REGISTRY:
        raise KeyError(f"unknown primitive {name!r}{suggest(name)}")
    return REGISTRY[name]


def list_primitives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"sequence": [], "channel": []}
    for name, entry in REGISTRY.items():
        out[entry.kind].append(name)
    return out
