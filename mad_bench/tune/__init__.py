"""Optuna self-tuning (per spec x task setting) and architecture search over search spaces."""
from .space import SearchSpace, load_space  # noqa: F401
