"""Plots from the results store alone: heatmap, accuracy vs difficulty, Pareto front, and the
history of an Optuna study.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state,
no display needed: the Agg canvas); ``save_figure`` writes PNG or SVG by the file's extension.
Colours: the Okabe-Ito palette (colour-blind-safe) with distinct markers and line styles, and
viridis for the heatmap.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from matplotlib.figure import Figure  # Figure without pyplot: Agg canvas, no global backend state

from .aggregate import mad_scores, setting_scores, task_scores
from .leaderboard import (FAILED, MAD_COLUMN, build_leaderboard, select_suite, spec_info, spec_labels,
                          synthetic_rows)

KINDS = ("heatmap", "difficulty", "pareto", "search-history", "mqar", "state", "proxy")
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", "-.", ":"]
DIFFICULTY_VARIABLES = ("seq_len", "vocab_size", "num_train_examples", "frac_noise", "num_tokens_to_copy")
LOG2_VARIABLES = {"seq_len", "vocab_size", "num_train_examples"}
LABELS = {"seq_len": "sequence length", "vocab_size": "vocabulary size",
          "num_train_examples": "training examples", "frac_noise": "fraction of noise",
          "num_tokens_to_copy": "tokens to copy", "params": "parameters",
          "test_acc_macro": "test accuracy (macro)", "test_acc": "test accuracy (micro)",
          "d_model": "model width (d_model)", "state_bytes": "recurrent state (bytes, fp32)"}
FORMATS = (".png", ".svg")


def style(i: int) -> dict:
    """Colour, marker and line style of the i-th series (distinct for 32 series)."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot write {str(path)!r}: use a .png or .svg file name")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format=path.suffix.lower()[1:])
    return path


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


# -- heatmap ------------------------------------------------------------------------------

def heatmap(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro") -> Figure:
    """Task x spec scores (spec rows sorted by MAD score; last column the MAD score).
    Cells with a partial grid or missing settings carry a '*'."""
    lb = build_leaderboard(frame, suite=suite, by="task", metric=metric)
    keys = list(lb.info.index)
    names = list(lb.info["spec"])
    cols = lb.columns
    data = np.full((len(keys), len(cols)), np.nan)
    flags = np.zeros_like(data, dtype=bool)
    failed = np.zeros_like(data, dtype=int)     # failed runs behind a cell without a score
    for i, k in enumerate(keys):
        for j, c in enumerate(cols):
            cell = lb.cell(k, c)
            if cell is not None:
                data[i, j] = cell["score"]
                if np.isnan(data[i, j]):
                    failed[i, j] = int(cell.get("n_failed") or 0)
                else:
                    flags[i, j] = not (cell["grid_complete"] and cell["covered"])
    w = max(5.0, 1.2 * len(cols) + 2.5)
    h = max(2.5, 0.45 * len(keys) + 1.6)
    fig = Figure(figsize=(w, h), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols], rotation=30, ha="right")
    ax.set_yticks(range(len(keys)), names)
    ax.set_xlabel("task")
    ax.set_ylabel("spec")
    ax.set_title(f"{lb.suite}: {label(metric)}")
    for i in range(len(keys)):
        for j in range(len(cols)):
            if not np.isnan(data[i, j]):
                v = data[i, j]
                ax.text(j, i, f"{v:.2f}" + ("*" if flags[i, j] else ""), ha="center", va="center",
                        fontsize=9, color="black" if v > 0.6 else "white")
            elif failed[i, j]:
                ax.text(j, i, f"{FAILED}{failed[i, j]}", ha="center", va="center", fontsize=9,
                        color="#b00020")
    if len(cols) > 1:  # separate the MAD score column
        ax.axvline(len(cols) - 1.5, color="white", linewidth=3)
    fig.colorbar(im, ax=ax, label=label(metric), shrink=0.9)
    notes = (["* partial lr x wd grid or missing settings"] if flags.any() else []) + (
        [f"{FAILED}n: only failed runs (n), not scored"] if failed.any() else [])
    if notes:
        fig.text(0.01, 0.0, "; ".join(notes), fontsize=8, va="bottom")
    return fig


# -- accuracy vs difficulty -----------------------------------------------------------------

def _difficulty_points(frame: pd.DataFrame, metric: str):
    """Per (task, variable): a frame of (spec, value, score, std) over the settings that vary
    that variable from the task's baseline (or, lacking a baseline, from the most common values)."""
    settings = setting_scores(frame, metric=metric)
    vars_here = [v for v in DIFFICULTY_VARIABLES if v in frame.columns]
    values = frame.drop_duplicates(["task", "setting"]).set_index(["task", "setting"])[vars_here]
    settings = settings.join(values, on=["task", "setting"])
    info = spec_info(frame)
    settings["spec_label"] = settings["spec_hash"].map(info["spec"])
    out = []
    for task in dict.fromkeys(frame["task"]):
        t = values.loc[task]
        varying = [v for v in vars_here if t[v].dropna().nunique() > 1]
        if not varying:
            continue
        base = t.loc["baseline"] if "baseline" in t.index else t.mode().iloc[0]
        for var in varying:
            others = [o for o in vars_here if o != var]
            keep = [s for s, r in t.iterrows()
                    if all((pd.isna(r[o]) and pd.isna(base[o])) or r[o] == base[o] for o in others)]
            pts = settings[(settings["task"] == task) & settings["setting"].isin(keep)]
            if pts[var].nunique() > 1:
                out.append((task, var, pts.sort_values(var)))
    return out


def difficulty(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
               ncols: int | None = None) -> Figure:
    """Accuracy (best grid point of each setting, mean ± std over seeds) vs each difficulty
    variable that varies in the store: one subplot per (task, variable), one line per spec."""
    frame, suite = select_suite(frame, suite)
    panels = _difficulty_points(frame, metric)
    if not panels:
        raise ValueError("no difficulty variable varies in the store "
                         f"({', '.join(DIFFICULTY_VARIABLES)}): run more than the baseline settings")
    order = list(mad_scores(task_scores(setting_scores(frame, metric=metric)))["spec_hash"])
    names = spec_info(frame)["spec"]
    ncols = ncols or min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles = {}
    for ax, (task, var, pts) in zip(axes.flat, panels):
        for i, h in enumerate(order):
            p = pts[pts["spec_hash"] == h]
            if p.empty:
                continue
            line = ax.errorbar(p[var], p["score"], yerr=p["score_std"].where(p["n_seeds"] > 1),
                               capsize=2, markersize=5, linewidth=1.5, **style(i))
            handles.setdefault(names[h], line)
        if var in LOG2_VARIABLES:
            ax.set_xscale("log", base=2)
        xs = sorted(pts[var].dropna().unique())
        ax.set_xticks(xs, [f"{x:g}" for x in xs], rotation=0 if len(xs) < 6 else 45)
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(task.replace("_", " "))
        ax.set_xlabel(label(var))
        ax.set_ylabel(label(metric))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{suite}: accuracy vs difficulty (best lr x wd grid point per setting)")
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(len(handles), 5), frameon=False)
    return fig


# -- Pareto front ---------------------------------------------------------------------------

def pareto_front(x, y, x_better: str = "lower") -> np.ndarray:
    """Boolean mask of the points not dominated (higher y, and lower or higher x)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    sign = 1.0 if x_better == "lower" else -1.0
    mask = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        dominated = ((sign * x <= sign * x[i]) & (y >= y[i]) & ((sign * x < sign * x[i]) | (y > y[i])))
        mask[i] = not dominated.any()
    return mask


def pareto_table(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
                 x: str = "params", x_better: str = "lower") -> pd.DataFrame:
    """Per spec: MAD score, x (params: the smallest count; another numeric column: the median
    over the spec's ok runs) and an ``on_front`` flag."""
    frame, suite = select_suite(frame, suite)
    mad = mad_scores(task_scores(setting_scores(frame, metric=metric)))
    info = spec_info(frame)
    if x == "params":
        xs = info["params"]
    else:
        if x not in frame.columns:
            raise ValueError(f"no column {x!r} in the results (numeric columns: "
                             f"{', '.join(c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]))})")
        vals = pd.to_numeric(frame[x], errors="coerce")
        if vals.isna().all():
            raise ValueError(f"column {x!r} has no numeric values")
        ok = frame.assign(_x=vals)
        ok = ok[ok["status"] == "ok"] if (ok["status"] == "ok").any() else ok
        xs = ok.groupby("spec_hash")["_x"].median()
    out = mad[["spec_hash", "mad_score", "grid_complete"]].copy()
    out["spec"] = out["spec_hash"].map(info["spec"])
    out[x] = out["spec_hash"].map(xs).astype(float)
    out["on_front"] = pareto_front(out[x], out["mad_score"], x_better)
    return out[["spec", "spec_hash", x, "mad_score", "grid_complete", "on_front"]]


def pareto(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
           x: str = "params", x_better: str = "lower") -> Figure:
    """MAD score vs ``x`` (parameters by default), the Pareto front highlighted."""
    if x_better not in ("lower", "higher"):
        raise ValueError("x_better must be 'lower' or 'higher'")
    _, suite = select_suite(frame, suite)
    t = pareto_table(frame, suite, metric, x, x_better)
    t = t[np.isfinite(t[x]) & np.isfinite(t["mad_score"])]
    if t.empty:
        raise ValueError(f"no spec has both a MAD score and a value of {x!r}")
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    off = t[~t["on_front"]]
    on = t[t["on_front"]].sort_values(x)
    if len(off):
        ax.scatter(off[x], off["mad_score"], s=40, color="#999999", marker="o", label="dominated", zorder=2)
    ax.scatter(on[x], on["mad_score"], s=70, color=OKABE_ITO[3], marker="D", edgecolor="black",
               label="Pareto front", zorder=3)
    if len(on) > 1:
        ax.step(on[x], on["mad_score"], where="post" if x_better == "lower" else "pre",
                color=OKABE_ITO[3], linewidth=1.5, zorder=1)
    for _, r in t.iterrows():
        ax.annotate(r["spec"] + ("" if r["grid_complete"] else "*"), (r[x], r["mad_score"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    xv = t[x][t[x] > 0]
    if len(xv) > 1 and xv.max() / xv.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel(label(x) + (" (lower is better)" if x_better == "lower" else " (higher is better)"))
    ax.set_ylabel(f"MAD score ({label(metric)})")
    ax.set_title(f"{suite}: MAD score vs {label(x)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


# -- MQAR: accuracy vs width and vs state size (Zoology's figures) --------------------------

SEGMENT_PREFIX = "seg_acc/"  # mqar-mixture rows: "seg_acc/seq_len=64/num_kv_pairs=4"


def mqar_points(frame: pd.DataFrame, suite: str | None = None) -> pd.DataFrame:
    """Tidy MQAR accuracies: one row per (spec, d_model, seq_len, num_kv_pairs), the best lr x wd
    grid point (Zoology's choice), averaged over seeds; micro accuracy (Zoology's metric).

    ``mqar`` rows give one point each; ``mqar-mixture`` rows give one point per test segment
    (their ``seg_acc/...`` columns). Columns: spec, d_model, seq_len, num_kv_pairs, acc,
    acc_std, n_seeds, state_bytes (the median over the point's runs)."""
    frame, _ = select_suite(frame, suite)
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    parts = []
    plain = ok[ok["task"] == "mqar"]
    if len(plain):
        parts.append(plain.assign(acc=plain["test_acc"]))
    mix = ok[ok["task"] == "mqar-mixture"]
    seg_cols = [c for c in mix.columns if c.startswith(SEGMENT_PREFIX)]
    for col in seg_cols:
        fields = dict(kv.split("=") for kv in col[len(SEGMENT_PREFIX):].split("/"))
        part = mix[mix[col].notna()]
        parts.append(part.assign(acc=part[col], seq_len=int(fields["seq_len"]),
                                 num_kv_pairs=int(fields["num_kv_pairs"])))
    if not parts:
        raise ValueError("no ok mqar or mqar-mixture rows in the store (run the mqar-figure2 or "
                         "mqar-zoology suite first)")
    pts = pd.concat(parts, ignore_index=True)
    if "d_model" not in pts or pts["d_model"].isna().all():
        raise ValueError("these rows have no d_model column (written before it existed): re-run them")
    # one line per spec across its widths; same-named specs that differ otherwise are named apart
    pts["spec"] = pts["spec_hash"].map(spec_labels(frame, ignore=("d_model",)))
    if "state_bytes" not in pts:
        pts["state_bytes"] = np.nan
    keys = ["spec", "d_model", "seq_len", "num_kv_pairs"]
    pts = pts.dropna(subset=["d_model", "acc"]).astype({"d_model": int})
    best = (pts.groupby(keys + ["seed"], dropna=False)
            .agg(acc=("acc", "max"), state_bytes=("state_bytes", "median")).reset_index())
    out = (best.groupby(keys, dropna=False)
           .agg(acc=("acc", "mean"), acc_std=("acc", "std"), n_seeds=("acc", "size"),
                state_bytes=("state_bytes", "median")).reset_index())
    return out.sort_values(keys, ignore_index=True)


def _mqar_panels(pts: pd.DataFrame, x: str, xlabel: str, title: str, connect: bool,
                 ncols: int | None) -> Figure:
    panels = list(pts[["seq_len", "num_kv_pairs"]].drop_duplicates()
                  .sort_values(["seq_len", "num_kv_pairs"]).itertuples(index=False))
    specs = list(dict.fromkeys(pts.sort_values("spec")["spec"]))
    ncols = ncols or min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.8 * ncols, 3.2 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    handles = {}
    for ax, (L, kv) in zip(axes.flat, panels):
        cell = pts[(pts["seq_len"] == L) & (pts["num_kv_pairs"] == kv)]
        for i, spec in enumerate(specs):
            p = cell[cell["spec"] == spec].sort_values(x)
            if p.empty:
                continue
            st = style(i)
            if not connect:
                st["linestyle"] = "none"
            line = ax.errorbar(p[x], p["acc"], yerr=p["acc_std"].where(p["n_seeds"] > 1),
                               capsize=2, markersize=5, linewidth=1.5, **st)
            handles.setdefault(spec, line)
        xs = sorted(cell[x].dropna().unique())
        if len(xs) and min(xs) > 0:
            ax.set_xscale("log", base=2)
        if x == "d_model":
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"seq_len {L}, {kv} kv pairs")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=min(len(handles), 5), frameon=False)
    return fig


def mqar(frame: pd.DataFrame, suite: str | None = None, ncols: int | None = None) -> Figure:
    """Zoology's figure: MQAR accuracy vs model width, one panel per (seq_len, kv pairs), one
    line per spec (best lr x wd per point, mean ± std over seeds)."""
    _, suite = select_suite(frame, suite)
    pts = mqar_points(frame, suite)
    return _mqar_panels(pts, "d_model", label("d_model"),
                        f"{suite}: MQAR accuracy vs width (best lr x wd per point)", True, ncols)


def state(frame: pd.DataFrame, suite: str | None = None, ncols: int | None = None) -> Figure:
    """MQAR accuracy vs recurrent state size (the rows' ``state_bytes``, ``madbench info``'s
    figure at the setting's length; for mqar-mixture the longest test length): one point per
    (spec, width), one panel per (seq_len, kv pairs)."""
    _, suite = select_suite(frame, suite)
    pts = mqar_points(frame, suite)
    pts = pts[pts["state_bytes"].notna() & (pts["state_bytes"] > 0)]
    if pts.empty:
        raise ValueError("no mqar row has a state_bytes column (rows written before it existed, "
                         "or no recurrent form): re-run them")
    return _mqar_panels(pts, "state_bytes", label("state_bytes"),
                        f"{suite}: MQAR accuracy vs recurrent state size", False, ncols)


# -- MAD score as a proxy for language modelling -------------------------------------------

def proxy_points(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
                 corpus: str | None = None) -> pd.DataFrame:
    """One row per spec name found in both kinds of rows: its MAD score on ``suite`` and its
    lowest validation loss among the ``madbench lm`` rows (``kind: lm``) of one corpus.

    Specs are matched by name: an LM run is usually wider than the MAD run (another spec hash).
    Where a name has several MAD scores (a width sweep) the best is taken. Columns: spec,
    mad_score, n_tasks (tasks behind the score), tasks_total (tasks of the suite in the
    store), val_loss, val_bpb, lm_params; a score over fewer tasks than the suite's is partial."""
    if "kind" not in frame.columns or not (frame["kind"] == "lm").any():
        raise ValueError("no language-model rows (kind lm) in the store: run `madbench lm SPEC` "
                         "with the same --results first")
    lm = frame[(frame["kind"] == "lm") & (frame["status"] == "ok")]
    corpora = sorted(str(t)[3:] for t in lm["task"].dropna().unique())
    if corpus is not None:
        if corpus not in corpora:
            raise ValueError(f"--corpus {corpus!r}: no ok lm rows on it (the store has: "
                             f"{', '.join(corpora) or 'none'})")
        lm = lm[lm["task"] == f"lm:{corpus}"]
    elif len(corpora) > 1:
        raise ValueError(f"the lm rows cover several corpora ({', '.join(corpora)}): pick one with --corpus")
    if lm.empty:
        raise ValueError("no ok lm rows in the store (every lm run diverged or failed)")
    best = lm.sort_values("test_loss").groupby("spec", as_index=False).first()
    syn, suite = select_suite(synthetic_rows(frame), suite)
    mad = mad_scores(task_scores(setting_scores(syn, metric=metric)))
    mad = mad.sort_values("mad_score", ascending=False).groupby("spec", as_index=False).first()
    mad = mad[["spec", "mad_score", "n_tasks"]].assign(tasks_total=int(syn["task"].nunique()))
    pts = mad.merge(best[["spec", "test_loss", "val_bpb", "params"]], on="spec", how="inner")
    if len(pts) < 2:
        raise ValueError(f"{len(pts)} spec(s) have both a MAD score on {suite!r} and an lm row (MAD: "
                         f"{', '.join(mad['spec']) or 'none'}; lm: {', '.join(best['spec'])}): a rank "
                         "correlation needs 2 or more")
    pts = pts.rename(columns={"test_loss": "val_loss", "params": "lm_params"})
    return pts.sort_values("mad_score", ascending=False, ignore_index=True)


def coverage_mark(n_tasks: int, tasks_total: int) -> str:
    """'' for a MAD score over the whole suite, else its mark: '† (3/6 tasks)'."""
    return "" if n_tasks >= tasks_total else f"† ({n_tasks}/{tasks_total} tasks)"


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's on average ranks (ties share a rank), through
    pandas (no scipy needed). NaN when either side is constant."""
    rx = pd.Series(list(x), dtype=float).rank()
    ry = pd.Series(list(y), dtype=float).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def proxy(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
          corpus: str | None = None) -> Figure:
    """MAD score against language-model validation loss, one point per spec, with Spearman's
    rho in the title (a good proxy: a higher score, a lower loss, rho near -1)."""
    _, suite = select_suite(synthetic_rows(frame), suite)
    pts = proxy_points(frame, suite, metric, corpus)
    rho = spearman(pts["mad_score"], pts["val_loss"])
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    partial = False
    for i, row in enumerate(pts.itertuples(index=False)):
        st = style(i)
        mark = coverage_mark(row.n_tasks, row.tasks_total)  # hollow: the score misses some tasks
        partial = partial or bool(mark)
        ax.scatter(row.mad_score, row.val_loss, marker=st["marker"], s=48, label=row.spec,
                   facecolors="none" if mark else st["color"], edgecolors=st["color"])
        ax.annotate(f"{row.spec} {mark}".rstrip(), (row.mad_score, row.val_loss), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    note = "\n† hollow: MAD score over the tasks stored so far, not the whole suite" if partial else ""
    ax.set_xlabel(f"MAD score ({suite}, {label(metric)}){note}")
    ax.set_ylabel("LM validation loss (nats per byte)")
    ax.set_title(f"MAD score vs language modelling: Spearman rho = {rho:.2f} (n = {len(pts)})")
    ax.grid(alpha=0.3)
    return fig


# -- Optuna search history ------------------------------------------------------------------

def load_study(study: str | None, storage: str | None = None, results: str = "results"):
    """An Optuna study: from ``storage`` (RDB URL or journal file) or, without it, the default
    journal ``results/<study>/journal.log`` that tune / search write."""
    from ..studies import load_study as load

    return load(study, storage, results)


def search_history(study, objective_name: str | None = None) -> Figure:
    """Objective of each completed trial and the best so far vs trial number (one panel per
    objective for a multi-objective study). ``study`` is an ``optuna.Study``."""
    import optuna

    trials = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise ValueError(f"study {study.study_name!r} has no completed trials yet")
    directions = study.directions
    stored = (study.user_attrs.get("config") or {}).get("objectives") or []
    names = ([objective_name] if objective_name else []) or list(getattr(study, "metric_names", None) or []) \
        or (list(stored) if len(stored) == len(directions) else []) \
        or (["objective"] if len(directions) == 1 else [f"objective {i}" for i in range(len(directions))])
    fig = Figure(figsize=(6.4, 3.6 * len(directions) + 0.4), layout="constrained")
    axes = fig.subplots(len(directions), 1, squeeze=False)[:, 0]
    numbers = np.array([t.number for t in trials])
    pruned = [t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.PRUNED]
    for k, (ax, direction) in enumerate(zip(axes, directions)):
        vals = np.array([t.values[k] for t in trials], dtype=float)
        maximize = direction == optuna.study.StudyDirection.MAXIMIZE
        best = np.maximum.accumulate(vals) if maximize else np.minimum.accumulate(vals)
        ax.scatter(numbers, vals, s=18, color=OKABE_ITO[0], alpha=0.7, label="trial")
        ax.step(numbers, best, where="post", color=OKABE_ITO[3], linewidth=2, label="best so far")
        if pruned:
            ax.scatter(pruned, [np.nanmin(vals) if maximize else np.nanmax(vals)] * len(pruned),
                       s=14, marker="x", color="#999999", label="pruned")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel(names[k] if k < len(names) else f"objective {k}")
        ax.set_title(f"{study.study_name}: {'maximise' if maximize else 'minimise'} "
                     f"{names[k] if k < len(names) else ''}".strip())
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    return fig


def make_plot(kind: str, frame: pd.DataFrame | None = None, suite: str | None = None,
              metric: str = "test_acc_macro", study: str | None = None, storage: str | None = None,
              x: str = "params", corpus: str | None = None, results: str = "results") -> Figure:
    if kind == "heatmap":
        return heatmap(frame, suite, metric)
    if kind == "difficulty":
        return difficulty(frame, suite, metric)
    if kind == "pareto":
        return pareto(frame, suite, metric, x=x)
    if kind == "search-history":
        return search_history(load_study(study, storage, results))
    if kind == "mqar":
        return mqar(frame, suite)
    if kind == "state":
        return state(frame, suite)
    if kind == "proxy":
        return proxy(frame, suite, metric, corpus)
    raise ValueError(f"plot kind {kind!r} is not valid (valid: {', '.join(KINDS)})")


__all__ = ["heatmap", "difficulty", "pareto", "pareto_front", "pareto_table", "search_history",
           "mqar", "mqar_points", "state", "proxy", "proxy_points", "coverage_mark", "spearman",
           "load_study", "save_figure", "figure_bytes", "make_plot", "MAD_COLUMN"]
