"""The module registry: primitive name -> (config class, module class, kind).

The names and configs are :data:`mad_bench.configs.registry.CONFIGS` (no torch); a module
joins its config with ``@register(Config)``. :func:`check_complete` (run when
``mad_bench.primitives`` is imported) fails when a config has no module or a module no config.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..configs.primitives.base import Kind, PrimitiveConfig
from ..configs.registry import CONFIGS, primitive_name, suggest
from .base import ChannelMixer, Primitive, SequenceMixer


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
    """Class decorator: the module of ``config``'s primitive (a name of the config registry)."""
    name = primitive_name(config)
    if CONFIGS.get(name) is not config:
        raise TypeError(f"{config.__name__} is not the config of {name!r} in "
                        f"mad_bench.configs.registry (add it there)")

    def decorate(module: type[Primitive]) -> type[Primitive]:
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} registered twice")
        base = SequenceMixer if config.kind == "sequence" else ChannelMixer
        if not issubclass(module, base):
            raise TypeError(f"{module.__name__} must subclass {base.__name__} "
                            f"({config.__name__} is a {config.kind} mixer config)")
        if getattr(config, "has_triton", False) != getattr(module, "has_triton", False):
            raise TypeError(f"{config.__name__}.has_triton is {config.has_triton} but "
                            f"{module.__name__}'s ops say {module.has_triton}: set it to match")
        REGISTRY[name] = Entry(name, config.kind, config, module)
        return module

    return decorate


def check_complete() -> None:
    """Every config has a module and every module a config, in the config registry's order."""
    missing = [n for n in CONFIGS if n not in REGISTRY]
    extra = [n for n in REGISTRY if n not in CONFIGS]
    if missing or extra:
        raise ImportError(f"primitive registries disagree: configs without a module {missing}, "
                          f"modules without a config {extra}")
    for name in CONFIGS:  # registry order = config order (the spec's union, the listings)
        REGISTRY[name] = REGISTRY.pop(name)


def get(name: str) -> Entry:
    if name not in REGISTRY:
        raise KeyError(f"unknown primitive {name!r}{suggest(name)}")
    return REGISTRY[name]
