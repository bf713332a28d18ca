"""Lazy package exports: ``import mad_bench`` (and ``madbench --help``) must not import torch.

A package sets ``__getattr__ = exports(__name__, {"name": ".module", ...})``; a name is imported
from its module the first time it is used (PEP 562), then cached in the package.
"""
from __future__ import annotations

import importlib
import sys


def exports(package: str, names: dict[str, str]):
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
