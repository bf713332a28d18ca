"""Optuna self-tuning (per spec x task setting) and architecture search over search spaces."""
from ..lazy import exports

__all__ = ["SearchSpace", "load_space"]
__getattr__ = exports(__name__, {"SearchSpace": ".space", "load_space": ".space"})
