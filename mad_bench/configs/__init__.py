"""The Pydantic models of everything a user writes: architecture specs and their primitive
configs, task settings, suites, training configs, search spaces.

Nothing here imports torch or pandas, so ``madbench validate`` and ``madbench schema`` start
fast; the modules a config describes live in :mod:`mad_bench.primitives` (nn.Modules) and
:mod:`mad_bench.tasks` (generators), which import their configs from here. Models that spec
validation does not use (task settings, suites, training, search spaces) build their
validators on first use (pydantic's ``defer_build``): importing them costs next to nothing.
"""
