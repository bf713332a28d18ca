"""Op families: each ``mad_bench.ops.<family>`` holds the one torch reference
(``reference.py``), the Triton kernels with their autograd functions (``triton.py``), the
recurrence as a plain loop over time (``naive.py``: dtype-preserving, so fp64 in fp64 out; the
oracle both are tested against, ``tests/ops/test_naive_oracles.py``) and, in its ``__init__``,
the op a layer calls once (``impl="auto"|"triton"|"torch"``, the one dispatch decision) plus
``HAS_TRITON``. Shared dispatch helpers: :mod:`.dispatch`.

Imports point one way: ``primitives -> ops``; nothing here imports the primitives.
"""
