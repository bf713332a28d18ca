"""Optuna self-tuning (per spec x task setting) and architecture search over search spaces.
The search-space model: :mod:`mad_bench.configs.space`; loading space files: :mod:`.space`."""
