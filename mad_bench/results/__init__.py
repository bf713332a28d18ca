"""Results: the store (Parquet rows), aggregation (MAD scores), leaderboards and plots."""
from .store import DEFAULT_DIR, ResultsStore, run_key  # noqa: F401
