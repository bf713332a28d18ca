"""Results: the store (Parquet rows), aggregation (MAD scores), leaderboards and plots."""
from ..lazy import exports

__all__ = ["DEFAULT_DIR", "ResultsStore", "run_key"]
__getattr__ = exports(__name__, {n: ".store" for n in __all__})
