"""The results store: one tidy table, one row per run, as Parquet files under a directory.

Each run is its own file ``runs/<run_key>.parquet``, written to a temporary name and renamed,
so a killed process never leaves a half-written file and no earlier row is ever rewritten.
Concurrent writers (parallel processes, Ray workers) never touch the same file. The key
hashes everything that determines a run's outcome, so a re-run is recognised and skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_DIR = Path("results")

# The fixed columns of DESIGN.md section 6, in order; task variables and extras follow.
COLUMNS = ["spec", "spec_hash", "primitives", "params", "suite", "task", "setting",
           "vocab_size", "seq_len", "num_train_examples", "lr", "weight_decay", "seed", "status",
           "test_acc", "test_acc_macro", "test_loss", "train_acc", "epochs_run", "wall_s",
           "device", "version", "created_at"]


def run_key(spec_hash: str, task: str, variables: dict[str, Any], training: dict[str, Any]) -> str:
    """Identity of a run: spec, task, the setting's variables and all training hyperparameters
    (lr, weight decay and seed among them)."""
    blob = json.dumps({"spec": spec_hash, "task": task, "setting": variables, "training": training},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class ResultsStore:
    def __init__(self, root: str | Path = DEFAULT_DIR):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def ensure_writable(self) -> None:
        """Fail early, with the path, before any training starts."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            probe = self.runs / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(f"results directory {str(self.root)!r} is not writable "
                                  f"({exc.strerror or exc})") from None

    def path_for(self, key: str) -> Path:
        return self.runs / f"{key}.parquet"

    def has(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def status(self, key: str) -> str | None:
        """The stored run's status (ok, diverged, failed); None if absent or unreadable."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return str(pd.read_parquet(path, columns=["status"])["status"].iloc[0])
        except Exception:  # noqa: BLE001 - a damaged file: the run is not there
            return None

    def has_result(self, key: str) -> bool:
        """A finished run is stored (ok or diverged: a result). A failed run is not: it is re-run."""
        return self.status(key) in ("ok", "diverged")

    def write(self, key: str, row: dict[str, Any]) -> Path:
        """Write one run's row atomically (replacing an earlier row of the same key)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        final = self.path_for(key)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        frame = pd.DataFrame([{**row, "run_key": key}])
        try:
            frame.to_parquet(tmp, index=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def read(self, key: str) -> dict[str, Any] | None:
        """One run's row as plain Python values (no ``run_key``); None if the store lacks it
        or its file cannot be read."""
        if not self.has(key):
            return None
        try:
            record = pd.read_parquet(self.path_for(key)).iloc[0].to_dict()
        except Exception:  # noqa: BLE001 - an unreadable file counts as missing
            return None
        record.pop("run_key", None)
        return {k: _plain(v) for k, v in record.items()}

    def load(self) -> pd.DataFrame:
        """All rows (empty frame with the fixed columns if there are none)."""
        files = sorted(self.runs.glob("*.parquet")) if self.runs.is_dir() else []
        if not files:
            return pd.DataFrame(columns=COLUMNS + ["run_key"])
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        # every fixed column exists (a store of failed runs has no accuracies): readers index freely
        return frame.reindex(columns=COLUMNS + [c for c in frame.columns if c not in COLUMNS])


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (rows travel between processes and into JSON)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    return value
