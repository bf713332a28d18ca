"""Leaderboards from the results store: one row per spec (or per sequence mixer).

``build_leaderboard(frame, suite=..., by="task"|"setting"|"primitive")`` aggregates the
store's rows the MAD way (``aggregate.py``: best lr x wd grid point per setting, mean over
settings per task, mean over tasks) and keeps, for every cell, the number of runs behind it,
the number of seeds (mean ± std over seeds where there are several) and whether the cell
is complete. Two flags are kept apart:

* ``*`` partial grid: some setting behind the cell has fewer lr x wd grid points than the
  suite's full grid (the best of a partial grid is not MAD's number);
* ``†`` missing coverage: the spec lacks settings of the task (or tasks of the suite) that
  other specs in the store have, so the mean runs over fewer settings.

Failed runs (crashes: no result) are not scores: they are left out of every number, and a
cell behind which runs failed carries ``✗n`` (n failed runs); a cell with nothing but failed
runs shows ``–✗n``, never 0.

Formats (``Leaderboard.render``): ``md``, ``csv``, ``html``, ``json`` -- one row per spec in
each. In md/html the best value of each column is bold; csv has a ``<column> best`` column and
json a ``best`` field per cell.
"""
from __future__ import annotations

import html as _html
import io
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from ..configs.errors import SpecError
from ..suite import load_suite
from .aggregate import (METRICS, failed_runs, mad_scores, run_scores, scored_runs, setting_scores,
                        task_scores)

from .choices import BY, FORMATS
from .settings import derive_mixers, drop_stale

MAD_COLUMN = "MAD score"
UNKNOWN_MIXER = "(unknown)"
PARTIAL_GRID = "*"
MISSING = "†"
FAILED = "✗"
LEGEND = (f"{PARTIAL_GRID} partial lr x wd grid behind the cell; {MISSING} settings or tasks missing "
          f"for this spec; {FAILED}n: n failed runs, left out (not scored); [n] runs behind the cell "
          "(and seeds, where several)")


# -- selecting rows ---------------------------------------------------------------------

def synthetic_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The store's synthetic-task rows: language-model rows (``kind: lm``, ``madbench lm``) are
    another kind of result (a loss on text, no accuracy) and stay out of the MAD views."""
    if frame is None or "kind" not in frame.columns:
        return frame
    return frame[frame["kind"] != "lm"]


def select_suite(frame: pd.DataFrame, suite: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of one suite; with ``suite=None`` the store must hold exactly one suite.
    Language-model rows are left out (:func:`synthetic_rows`)."""
    frame = synthetic_rows(frame)
    if frame is None or frame.empty:
        raise ValueError("the results store is empty (of synthetic-task runs; `madbench lm` rows "
                         "are not scored here): run `madbench run` or `madbench bench` first")
    suites = sorted(str(s) for s in frame["suite"].dropna().unique())
    if not suites:
        raise ValueError("the results rows name no suite")
    if suite is None:
        if len(suites) != 1:
            raise ValueError(f"the results store holds several suites ({', '.join(suites)}): "
                             "pick one with --suite")
        suite = suites[0]
    rows = frame[frame["suite"] == suite]
    if rows.empty:
        raise ValueError(f"no results for suite {suite!r} in the store "
                         f"(it holds: {', '.join(suites) or 'nothing'})")
    return drop_stale(rows.reset_index(drop=True)), suite


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid (valid: {', '.join(METRICS)})")


# -- the leaderboard ----------------------------------------------------------------------

@dataclass
class Leaderboard:
    """``info``: one row per entry (index = row key: spec_hash, or the mixer), sorted best first.
    ``cells``: long table (key, column, score, std, n_seeds, n_runs, grid_complete, covered).
    std is over seeds for specs, over specs (n_specs of them) for ``by="primitive"``."""

    suite: str
    metric: str
    by: str
    label: str                      # name of the row column: "spec" or "mixer"
    info: pd.DataFrame
    columns: list[str]
    cells: pd.DataFrame
    info_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # rows left out (stale settings), said below

    # -- views ---------------------------------------------------------------------------
    def cell(self, key, column) -> dict | None:
        """The cell's record (score, std, n_seeds, n_runs, grid_complete, covered[, n_specs])."""
        return self._cells.get((key, column))

    def __post_init__(self):
        self._cells = {(r["key"], r["column"]): r for r in self.cells.to_dict("records")}
        self._best = {}
        for col in self.columns:
            # a cell over fewer settings / tasks than the others competes only if none is complete
            candidates = [c for (k, cc), c in self._cells.items() if cc == col and _finite(c["score"])]
            if any(c["covered"] for c in candidates):
                candidates = [c for c in candidates if c["covered"]]
            top = max((c["score"] for c in candidates), default=None)
            self._best[col] = {c["key"] for c in candidates
                               if math.isclose(c["score"], top, rel_tol=0, abs_tol=1e-12)}

    def is_best(self, key, column) -> bool:
        return key in self._best.get(column, set())

    @property
    def complete(self) -> bool:
        return bool((self.cells["grid_complete"] & self.cells["covered"]).all())

    def wide(self) -> pd.DataFrame:
        """One row per entry: info columns, then per column its score, std, seeds, runs,
        grid/coverage flags and a best marker."""
        out = self.info[self.info_columns].copy()
        for col in self.columns:
            vals = {k: self._cells.get((k, col)) for k in out.index}
            get = lambda name, default=None: [v[name] if v is not None else default  # noqa: E731
                                             for v in vals.values()]
            out[col] = get("score", float("nan"))
            out[f"{col} std"] = get("std", float("nan"))
            out[f"{col} seeds"] = get("n_seeds", 0)
            out[f"{col} runs"] = get("n_runs", 0)
            out[f"{col} grid complete"] = get("grid_complete", False)
            out[f"{col} covered"] = get("covered", False)
            out[f"{col} failed"] = [int(v.get("n_failed") or 0) if v is not None else 0 for v in vals.values()]
            out[f"{col} best"] = [self.is_best(k, col) for k in out.index]
        return out.reset_index(drop=True)

    # -- text of one cell ----------------------------------------------------------------
    def cell_text(self, key, column, detail: bool = True) -> str:
        c = self._cells.get((key, column))
        failed = f"{FAILED}{int(c['n_failed'])}" if c is not None and c.get("n_failed") else ""
        if c is None or not _finite(c["score"]):
            return "–" + failed
        text = f"{c['score']:.3f}"
        spread = c.get("n_specs", 1) > 1 if self.by == "primitive" else c["n_seeds"] > 1
        if spread:
            text += f" ± {c['std']:.3f}"
        flags = ("" if c["grid_complete"] else PARTIAL_GRID) + ("" if c["covered"] else MISSING)
        if detail:
            runs = f"{int(c['n_runs'])}"
            if c["n_seeds"] > 1:
                runs += f", {int(c['n_seeds'])} seeds"
            if self.by == "primitive":
                runs += f", {int(c['n_specs'])} spec{'s' if c['n_specs'] != 1 else ''}"
            return f"{text} [{runs}]{flags}{failed}"
        return text + flags + failed

    def _header(self) -> list[str]:
        return ["#"] + self.info_columns + self.columns

    def _info_text(self, key, col) -> str:
        v = self.info.loc[key, col]
        if col == "params":
            return "–" if not _finite(v) else f"{int(v):,}"
        return str(v)

    # -- formats ---------------------------------------------------------------------------
    def to_markdown(self) -> str:
        head = self._header()
        lines = [f"**{self.suite}** · metric `{self.metric}` · by {self.by} "
                 "(best grid point per setting, mean over settings, mean over tasks)", "",
                 "| " + " | ".join(head) + " |",
                 "|" + "|".join("---:" if h in self.columns or h in ("#", "params") else "---"
                                for h in head) + "|"]
        for rank, key in enumerate(self.info.index, 1):
            cells = [str(rank)] + [_md_escape(self._info_text(key, c)) for c in self.info_columns]
            for col in self.columns:
                t = _md_escape(self.cell_text(key, col))
                cells.append(f"**{t}**" if self.is_best(key, col) else t)
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Bold: best in its column. {_md_escape(LEGEND)}."]
        lines += [f"Note: {_md_escape(n)}." for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.wide().to_csv(buf, index=False)
        return buf.getvalue()

    def to_records(self) -> list[dict]:
        records = []
        for rank, key in enumerate(self.info.index, 1):
            rec: dict = {"rank": rank}
            for c in self.info_columns:
                rec[c] = _jsonable(self.info.loc[key, c])
            rec["cells"] = {}
            for col in self.columns:
                c = self._cells.get((key, col))
                if c is None:
                    rec["cells"][col] = None
                    continue
                rec["cells"][col] = {
                    "score": _jsonable(c["score"]), "std": _jsonable(c["std"]),
                    "n_seeds": int(c["n_seeds"]), "n_runs": int(c["n_runs"]),
                    "grid_complete": bool(c["grid_complete"]), "covered": bool(c["covered"]),
                    "n_failed": int(c.get("n_failed") or 0), "best": self.is_best(key, col),
                    **({"n_specs": int(c["n_specs"])} if self.by == "primitive" else {})}
            records.append(rec)
        return records

    def to_json(self) -> str:
        return json.dumps({"suite": self.suite, "metric": self.metric, "by": self.by,
                           "columns": self.columns, "rows": self.to_records(), "notes": self.notes},
                          indent=2)

    def to_html(self, full_page: bool = False) -> str:
        e = _html.escape
        out = ['<table class="leaderboard">',
               f"<caption>{e(self.suite)} · {e(self.metric)} · by {e(self.by)}</caption>",
               "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in self._header()) + "</tr></thead>",
               "<tbody>"]
        for rank, key in enumerate(self.info.index, 1):
            tds = [f"<td>{rank}</td>"] + [f"<td>{e(self._info_text(key, c))}</td>" for c in self.info_columns]
            for col in self.columns:
                c = self._cells.get((key, col))
                title = "" if c is None else (f"{int(c['n_runs'])} runs, {int(c['n_seeds'])} seed(s), grid "
                                              + ("complete" if c["grid_complete"] else "partial")
                                              + ("" if c["covered"] else ", settings missing"))
                text = e(self.cell_text(key, col))
                if self.is_best(key, col):
                    text = f"<b>{text}</b>"
                cls = "" if c is None or (c["grid_complete"] and c["covered"]) else ' class="partial"'
                tds.append(f'<td title="{e(title)}"{cls}>{text}</td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
        out += ["</tbody>", "</table>", f'<p class="legend">Bold: best in its column. {e(LEGEND)}.</p>']
        out += [f'<p class="legend">Note: {e(n)}.</p>' for n in self.notes]
        body = "\n".join(out)
        if not full_page:
            return body + "\n"
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{e(self.suite)} leaderboard</title><style>{TABLE_CSS}</style></head>"
                f"<body>\n{body}\n</body></html>\n")

    def render(self, fmt: str) -> str:
        if fmt == "md":
            return self.to_markdown()
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json()
        if fmt == "html":
            return self.to_html(full_page=True)
        raise ValueError(f"format {fmt!r} is not valid (valid: {', '.join(FORMATS)})")


TABLE_CSS = """
table.leaderboard{border-collapse:collapse;font:13px/1.4 system-ui,sans-serif;margin:1em 0}
table.leaderboard th,table.leaderboard td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.leaderboard th{background:#f0f0f0}
table.leaderboard td:nth-child(2),table.leaderboard td:nth-child(4){text-align:left}
table.leaderboard caption{font-weight:600;text-align:left;padding:4px 0}
table.leaderboard td.partial{background:#fff4e0}
p.legend{font:12px system-ui,sans-serif;color:#555}
"""


def _finite(v) -> bool:
    try:
        return v is not None and not pd.isna(v) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _jsonable(v):
    if v is None:
        return None
    if isinstance(v, (bool,)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return v
    return v


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


# -- aggregation --------------------------------------------------------------------------

def _per_seed_scores(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (spec_hash, task, setting, seed): best grid point (failed runs left out)."""
    df = scored_runs(df)
    df = df.assign(score=run_scores(df, metric))
    return (df.groupby(["spec_hash", "task", "setting", "seed"], dropna=False)["score"].max()
              .reset_index())


def _seed_std(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Std over seeds of a per-seed score aggregated up to ``keys`` (+seed)."""
    g = per_seed.groupby(keys + ["seed"], dropna=False)["score"].mean().reset_index()
    return (g.groupby(keys, dropna=False)["score"].agg(std="std", n_seeds="size").reset_index()
             .assign(std=lambda d: d["std"].fillna(0.0)))


def suite_task_order(frame: pd.DataFrame) -> list[str]:
    """Tasks in their suite file's order where the suite is a shipped one, else as stored."""
    stored = list(dict.fromkeys(frame["task"]))
    suites = frame["suite"].dropna().unique()
    if len(suites) == 1:
        try:
            listed = list(load_suite(suites[0]).tasks)
        except SpecError:  # a suite that is not shipped under that name: keep stored order
            return stored
        return [t for t in listed if t in stored] + [t for t in stored if t not in listed]
    return stored


def spec_cells(frame: pd.DataFrame, metric: str, by: str) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Cells keyed by spec_hash: (cells, columns, mad) for by = task | setting."""
    task_order = suite_task_order(frame)
    columns = _columns(frame, by, task_order)
    if scored_runs(frame).empty:  # nothing but failed runs: no scores, only their counts
        mad = pd.DataFrame(columns=["spec", "spec_hash", "suite", "mad_score", "n_tasks", "n_runs",
                                    "grid_complete"])
        return _with_failed([], frame, by), columns + [MAD_COLUMN], mad
    settings = setting_scores(frame, metric=metric)
    tasks = task_scores(settings)
    mad = mad_scores(tasks)
    per_seed = _per_seed_scores(frame, metric)
    # coverage: every setting of the task that any spec has in the store
    all_settings = settings.groupby("task")["setting"].nunique().to_dict()
    n_tasks = len(task_order)

    rows = []
    if by == "task":
        std = _seed_std(per_seed.groupby(["spec_hash", "task", "seed"], dropna=False)["score"].mean()
                        .reset_index().assign(setting="-"), ["spec_hash", "task"])
        t = tasks.merge(std, on=["spec_hash", "task"], how="left")
        for r in t.to_dict("records"):
            rows.append({"key": r["spec_hash"], "column": r["task"], "score": r["score"], "std": r["std"],
                         "n_seeds": int(r["n_seeds"]), "n_runs": int(r["n_runs"]),
                         "grid_complete": bool(r["grid_complete"]),
                         "covered": int(r["n_settings"]) >= all_settings[r["task"]]})
    else:
        settings = settings.assign(column=settings["task"] + "[" + settings["setting"].astype(str) + "]")
        for r in settings.to_dict("records"):
            rows.append({"key": r["spec_hash"], "column": r["column"], "score": r["score"],
                         "std": r["score_std"], "n_seeds": int(r["n_seeds"]), "n_runs": int(r["n_runs"]),
                         "grid_complete": bool(r["grid_complete"]), "covered": True})
    # MAD score: std over seeds of the per-seed MAD score
    spec_seed = (per_seed.groupby(["spec_hash", "task", "seed"], dropna=False)["score"].mean()
                 .reset_index().groupby(["spec_hash", "seed"], dropna=False)["score"].mean().reset_index())
    mstd = spec_seed.groupby("spec_hash")["score"].agg(std="std", n_seeds="size").reset_index()
    mstd["std"] = mstd["std"].fillna(0.0)
    task_cov = tasks.assign(cov=tasks["n_settings"] >= tasks["task"].map(all_settings))
    task_cov = task_cov.groupby("spec_hash")["cov"].all().to_dict()
    m = mad.merge(mstd, on="spec_hash", how="left")
    for r in m.to_dict("records"):
        rows.append({"key": r["spec_hash"], "column": MAD_COLUMN, "score": r["mad_score"], "std": r["std"],
                     "n_seeds": int(r["n_seeds"]), "n_runs": int(r["n_runs"]),
                     "grid_complete": bool(r["grid_complete"]),
                     "covered": int(r["n_tasks"]) >= n_tasks and task_cov.get(r["spec_hash"], False)})
    return _with_failed(rows, frame, by), columns + [MAD_COLUMN], mad


def _columns(frame: pd.DataFrame, by: str, task_order: list[str]) -> list[str]:
    """Tasks in suite order, or (by setting) ``task[setting]`` with each task's baseline first."""
    if by == "task":
        return task_order
    order = (frame.assign(column=frame["task"] + "[" + frame["setting"].astype(str) + "]")
             .drop_duplicates("column"))
    order = order.assign(_b=order["setting"] != "baseline",
                         _t=order["task"].map({t: i for i, t in enumerate(task_order)}))
    return list(order.sort_values(["_t", "_b"], kind="stable")["column"])


def _with_failed(rows: list[dict], frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Cells with their failed-run counts; a cell with only failed runs is a cell without a score."""
    frame = frame.assign(column=frame["task"] if by == "task"
                         else frame["task"] + "[" + frame["setting"].astype(str) + "]")
    failed = failed_runs(frame, ["spec_hash", "column"])
    failed = pd.concat([failed, failed_runs(frame, ["spec_hash"]).assign(column=MAD_COLUMN)])
    counts = {(r["spec_hash"], r["column"]): int(r["failed"]) for r in failed.to_dict("records")}
    cells = pd.DataFrame(rows, columns=["key", "column", "score", "std", "n_seeds", "n_runs",
                                        "grid_complete", "covered"])
    have = set(zip(cells["key"], cells["column"]))
    empty = [{"key": k, "column": c, "score": float("nan"), "std": float("nan"), "n_seeds": 0,
              "n_runs": 0, "grid_complete": False, "covered": False}
             for (k, c) in counts if (k, c) not in have]
    if empty:
        cells = pd.concat([cells, pd.DataFrame(empty)], ignore_index=True)
    return cells.assign(n_failed=[counts.get(kc, 0) for kc in zip(cells["key"], cells["column"])])


# -- naming specs ------------------------------------------------------------------------

MAX_LABEL_FIELDS = 3  # differing fields named in a label before "..." (then the hash decides)


def _flatten(value, path: str, out: dict) -> dict:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out)
    else:
        out[path] = value
    return out


def _spec_fields(row: pd.Series) -> dict:
    """The fields of a row's spec, flattened (``layers[0].n_heads``): from ``spec_config`` (the
    spec as hashed); rows written before that column existed give their ``d_model`` only."""
    config = row.get("spec_config")
    if isinstance(config, str) and config:
        return _flatten(json.loads(config), "", {})
    d = row.get("d_model")
    return {"d_model": int(d)} if d is not None and not pd.isna(d) else {}


def _field_text(path: str, fields: dict) -> str:
    value = fields[path] if path in fields else "-"  # "-": the spec lacks the field
    return f"d={value}" if path == "d_model" else f"{path}={value}"


def spec_labels(frame: pd.DataFrame, ignore: tuple[str, ...] = ()) -> pd.Series:
    """Per spec_hash: the name people read. A name shared by several spec hashes (the width
    variants of a suite's ``d_model`` grid, or edited copies) gets the fields that tell them
    apart: ``zoo-attention d=64``, ``zoo-based layers[1].feature_dim=16``; the hash is added
    only where the rows do not say what differs. Fields in ``ignore`` are not named (the MQAR
    plots draw ``d_model`` as the x axis), so hashes differing only there share a label."""
    firsts = frame.drop_duplicates("spec_hash").set_index("spec_hash")
    names = firsts["spec"].astype(str)
    labels = names.copy()
    for name, hashes in names.groupby(names).groups.items():
        if len(hashes) < 2:
            continue
        fields = {h: {k: v for k, v in _spec_fields(firsts.loc[h]).items() if k not in ignore}
                  for h in hashes}
        paths = list(dict.fromkeys(p for f in fields.values() for p in f))
        differ = [p for p in paths
                  if len({(p in f, json.dumps(f.get(p), default=str)) for f in fields.values()}) > 1]
        differ.sort(key=lambda p: p != "d_model")  # the width first, then by path
        shown = differ[:MAX_LABEL_FIELDS]
        for h in hashes:
            parts = [_field_text(p, fields[h]) for p in shown]
            if len(differ) > len(shown):
                parts.append("...")
            labels[h] = " ".join([name, *parts])
        group = labels[list(hashes)]
        clashing = group[group.duplicated(keep=False)]
        for _, same in clashing.groupby(clashing):
            known = {json.dumps(fields[h], sort_keys=True, default=str) for h in same.index}
            if ignore and len(known) == 1:
                continue  # they differ only in ignored fields (as far as the rows say): one label
            for h in same.index:
                labels[h] = f"{labels[h]} ({str(h)[:8]})"
    return labels


def spec_info(frame: pd.DataFrame) -> pd.DataFrame:
    """Per spec_hash: spec name (disambiguated), params, primitives summary and sequence mixer
    (the rows' ``mixer`` column, written from the spec; rows without it: derived from their
    primitives, else ``(unknown)``)."""
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    params = pd.to_numeric((ok if not ok.empty else frame).get("params", pd.Series(dtype=float)),
                           errors="coerce")
    src = (ok if not ok.empty else frame).assign(_params=params)
    frame = frame.assign(mixer=derive_mixers(frame))
    info = (frame.groupby("spec_hash", dropna=False)
                 .agg(spec=("spec", "first"),
                      primitives=("primitives", "first") if "primitives" in frame else ("spec", lambda s: ""),
                      mixer=("mixer", "first"))
                 .join(src.groupby("spec_hash", dropna=False)["_params"].min().rename("params")))
    info["spec"] = info.index.map(spec_labels(frame))
    info["primitives"] = info["primitives"].fillna("")
    info["mixer"] = info["mixer"].fillna(UNKNOWN_MIXER)
    return info[["spec", "params", "primitives", "mixer"]]


def build_leaderboard(frame: pd.DataFrame, suite: str | None = None, by: str = "task",
                      metric: str = "test_acc_macro") -> Leaderboard:
    """The leaderboard of one suite. ``frame`` is ``ResultsStore.load()``."""
    if by not in BY:
        raise ValueError(f"--by {by!r} is not valid (valid: {', '.join(BY)})")
    _check_metric(metric)
    frame, suite = select_suite(frame, suite)
    notes = list(frame.attrs.get("notes", []))
    info = spec_info(frame)
    if by == "primitive" and (info["mixer"] == UNKNOWN_MIXER).any():
        notes.append(f"{UNKNOWN_MIXER}: rows without a mixer column whose primitives are not all "
                     "registered (re-run them to record it)")
    if by in ("task", "setting"):
        cells, columns, mad = spec_cells(frame, metric, by)
        # complete specs first (a score over fewer tasks is not comparable), then by MAD score
        covered = cells[cells["column"] == MAD_COLUMN].set_index("key")["covered"]
        ranked = mad.assign(_covered=mad["spec_hash"].map(covered).fillna(False).astype(bool))
        ranked = ranked.sort_values(["_covered", "mad_score"], ascending=[False, False], kind="stable")
        unscored = [k for k in info.index if k not in set(ranked["spec_hash"])]  # only failed runs
        info = info.loc[list(ranked["spec_hash"]) + unscored]
        return Leaderboard(suite, metric, by, "spec", info, columns, cells,
                           info_columns=["spec", "params", "primitives"], notes=notes)

    # by primitive: group specs by their sequence mixer(s)
    cells, columns, mad = spec_cells(frame, metric, "task")
    cells = cells.assign(mixer=cells["key"].map(info["mixer"]))
    mad_of = mad.set_index("spec_hash")["mad_score"]
    rows = []
    for (mixer, col), g in cells.groupby(["mixer", "column"], sort=False):
        rows.append({"key": mixer, "column": col, "score": g["score"].mean(),
                     "std": g["score"].std() if len(g) > 1 else 0.0,
                     "n_seeds": int(g["n_seeds"].max()), "n_runs": int(g["n_runs"].sum()),
                     "grid_complete": bool(g["grid_complete"].all()), "covered": bool(g["covered"].all()),
                     "n_specs": len(g), "n_failed": int(g["n_failed"].sum())})
    grouped = pd.DataFrame(rows)
    ginfo = []
    for mixer, g in info.groupby("mixer", sort=False):
        members = g.assign(mad=g.index.map(mad_of)).sort_values("mad", ascending=False)
        mad_cell = grouped[(grouped["key"] == mixer) & (grouped["column"] == MAD_COLUMN)]["score"]
        ginfo.append({"key": mixer, "mixer": mixer, "specs": len(g),
                      "best spec": members["spec"].iloc[0],
                      "members": ", ".join(members["spec"]),
                      "params": members["params"].median(),
                      "_mad": mad_cell.iloc[0] if len(mad_cell) else float("nan")})
    ginfo = (pd.DataFrame(ginfo).sort_values("_mad", ascending=False, na_position="last")
             .set_index("key", drop=False))
    return Leaderboard(suite, metric, by, "mixer", ginfo, columns, grouped,
                       info_columns=["mixer", "specs", "best spec", "members"], notes=notes)
