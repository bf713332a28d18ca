"""Rows against today's suites: which rows were made with a setting that has since changed
(stale), and the sequence mixer of rows written before the ``mixer`` column existed.

Each row carries its setting's task variables as columns and, since rows had it, a
``setting_hash`` (:meth:`mad_bench.suite.Setting.setting_hash`). A row is stale when its
(suite, task, setting) is one of a suite that still loads and its variables differ from the
suite's today; for a suite that does not load (a YAML file elsewhere), when newer rows of the
same (suite, task, setting) carry another ``setting_hash``. Against a shipped suite, the
variables its file writes are compared. Stale rows are left out of leaderboards, plots and
reports, with a note saying what changed.
"""
from __future__ import annotations

import re

import pandas as pd

from ..configs.errors import SpecError
from ..configs.registry import CONFIGS
from ..suite import load_suite


def _current_settings(suite: str) -> dict[tuple[str, str], dict] | None:
    """(task, setting id) -> the variables a shipped suite writes today for that setting
    (baseline plus the change: what the suite file says, not the defaults filled in); None for
    a suite that does not load under that name."""
    try:
        model = load_suite(suite)
    except SpecError:
        return None
    if model.name != suite:
        return None
    out: dict[tuple[str, str], dict] = {}
    for task, entry in model.tasks.items():
        base = dict(entry.baseline)
        out[(task, "baseline")] = base
        for key, values in entry.changes.items():
            for v in values:
                out[(task, f"{key}={v}")] = {**base, key: v}
        for extra in entry.settings:
            change = {k: v for k, v in extra.items() if k != "training"}
            out[(task, ",".join(f"{k}={v}" for k, v in change.items()))] = {**base, **change}
    return out


def _same(a, b) -> bool:
    if isinstance(b, (list, tuple)):
        return list(a) == list(b) if isinstance(a, (list, tuple)) else str(a) == str(list(b))
    try:
        if pd.isna(a):
            return b is None
    except (TypeError, ValueError):
        pass
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def _show(value) -> str:
    """A stored value as the suite writes it (16, not 16.0 from a column with gaps)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def stale_mask(frame: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """(rows made with a changed setting, one line per changed (suite, task, setting))."""
    mask = pd.Series(False, index=frame.index)
    notes: list[str] = []
    if frame.empty:
        return mask, notes
    for suite, rows in frame.groupby("suite", dropna=True):
        today = _current_settings(str(suite))
        for (task, sid), g in rows.groupby(["task", "setting"], dropna=False):
            if today is not None and (task, sid) in today:
                want = today[(task, sid)]
                diffs: dict[str, set] = {}
                bad = pd.Series(False, index=g.index)
                for key, value in want.items():
                    if key not in g:
                        continue
                    differs = ~g[key].map(lambda a, v=value: _same(a, v))
                    if differs.any():
                        diffs[key] = set(map(_show, g.loc[differs, key].unique()))
                        bad |= differs
                if bad.any():
                    mask[g.index[bad]] = True
                    what = ", ".join(f"{k} {'/'.join(sorted(v))} -> {want[k]}" for k, v in diffs.items())
                    notes.append(f"{suite} {task}[{sid}]: {int(bad.sum())} row(s) made with an older "
                                 f"setting ({what})")
            elif "setting_hash" in g and g["setting_hash"].nunique(dropna=True) > 1:
                newest = g.sort_values("created_at")["setting_hash"].dropna().iloc[-1]
                bad = g["setting_hash"] != newest
                mask[g.index[bad]] = True
                notes.append(f"{suite} {task}[{sid}]: {int(bad.sum())} row(s) made with an older "
                             f"setting (another setting_hash than the newest rows')")
    return mask, notes


def drop_stale(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of today's settings; ``frame.attrs['notes']`` says what was left out and why."""
    mask, notes = stale_mask(frame)
    if not mask.any():
        return frame
    if mask.all():
        raise ValueError("every row was made with an older setting of its suite: "
                         + "; ".join(notes) + ". Re-run them (`madbench bench ...`)")
    out = frame[~mask].reset_index(drop=True)
    out.attrs["notes"] = [f"left out: {n}; re-run them to score this setting" for n in notes]
    return out


def derive_mixers(frame: pd.DataFrame) -> pd.Series:
    """The ``mixer`` of each row; rows written before that column get it from their
    ``primitives`` summary ('attention+swiglu x2' -> 'attention') and the primitive registry."""
    have = frame["mixer"] if "mixer" in frame else pd.Series(None, index=frame.index, dtype=object)
    missing = have.isna()
    if not missing.any() or "primitives" not in frame:
        return have
    def from_summary(text) -> str | None:
        if not isinstance(text, str) or not text:
            return None
        types = re.sub(r"\s+x\d+$", "", text.strip()).split("+")
        if any(t not in CONFIGS for t in types):
            return None
        seq = []
        for t in types:
            if CONFIGS[t].kind == "sequence" and t not in seq:
                seq.append(t)
        return "+".join(seq) or "(none)"

    derived = frame.loc[missing, "primitives"].map(from_summary)
    return have.where(~missing, derived)
