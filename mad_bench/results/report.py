"""One self-contained HTML report: leaderboards, the per-setting table and the plots embedded
as base64 PNG (no external resources: it opens from disk in any browser, no server)."""
from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .leaderboard import TABLE_CSS, build_leaderboard, select_suite, synthetic_rows
from .plots import difficulty, figure_bytes, heatmap, pareto

PAGE_CSS = """
body{font:14px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;
     padding:0 1.5em;color:#222}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.1em}.meta{color:#666}.scroll{overflow-x:auto}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:12px}.note{color:#a05a00}
"""


def _img(fig, alt: str) -> str:
    data = base64.b64encode(figure_bytes(fig, "png", dpi=110)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _suite_section(frame: pd.DataFrame, suite: str, metric: str) -> str:
    e = html.escape
    parts = [f'<h2 id="{e(suite)}">Suite {e(suite)}</h2>']
    rows = frame[frame["suite"] == suite]
    status = rows["status"].value_counts().to_dict()
    parts.append(f'<p class="meta">{len(rows)} runs of {rows["spec_hash"].nunique()} spec(s) on '
                 f'{rows["task"].nunique()} task(s), {rows[["task", "setting"]].drop_duplicates().shape[0]} '
                 f'setting(s); status: {e(", ".join(f"{k} {v}" for k, v in status.items()))}</p>')
    lb = build_leaderboard(frame, suite=suite, by="task", metric=metric)
    if not lb.complete:
        parts.append('<p class="note">Some scores stand on a partial lr x wd grid (*) or lack settings '
                     '(†): they are not comparable with complete MAD scores.</p>')
    parts += ["<h3>Leaderboard (per task)</h3>", f'<div class="scroll">{lb.to_html()}</div>']
    parts += ["<h3>By sequence mixer</h3>",
              f'<div class="scroll">{build_leaderboard(frame, suite, "primitive", metric).to_html()}</div>']
    parts += ["<h3>Per setting</h3>",
              f'<div class="scroll">{build_leaderboard(frame, suite, "setting", metric).to_html()}</div>']
    parts.append("<h3>Plots</h3>")
    for title, make in (("Task x spec heatmap", heatmap), ("Accuracy vs difficulty", difficulty),
                        ("MAD score vs parameters (Pareto front)", pareto)):
        try:
            fig = make(frame, suite, metric)
        except ValueError as exc:
            parts.append(f'<p class="note">{e(title)}: not drawn ({e(str(exc))})</p>')
            continue
        parts.append(f"<figure>{_img(fig, title)}<figcaption>{e(title)}</figcaption></figure>")
    return "\n".join(parts)


def build_report(frame: pd.DataFrame, suite: str | None = None, metric: str = "test_acc_macro",
                 source: str = "", extra_figures: list | None = None) -> str:
    """The report's HTML. With ``suite=None`` every suite in the store gets a section.
    ``extra_figures``: (title, Figure) pairs appended at the end (e.g. a search history).
    Language-model rows (``madbench lm``) are not part of it."""
    frame = synthetic_rows(frame)
    if frame is None or frame.empty:
        raise ValueError("the results store is empty: run `madbench run` or `madbench bench` first")
    if suite is not None:
        select_suite(frame, suite)  # clear error for an unknown suite
        suites = [suite]
    else:
        suites = sorted(str(s) for s in frame["suite"].dropna().unique())
    e = html.escape
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = ["<h1>mad_bench report</h1>",
            f'<p class="meta">results: {e(source) or "(in memory)"} · metric: {e(metric)} '
            f"(best lr x wd grid point per setting, mean over settings per task, mean over tasks) · "
            f"generated {e(now)}</p>"]
    if len(suites) > 1:
        body.append("<p>Suites: " + ", ".join(f'<a href="#{e(s)}">{e(s)}</a>' for s in suites) + "</p>")
    body += [_suite_section(frame, s, metric) for s in suites]
    for title, fig in extra_figures or []:
        body.append(f"<h2>{e(title)}</h2><figure>{_img(fig, title)}</figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>mad_bench report</title><style>{PAGE_CSS}{TABLE_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(frame: pd.DataFrame, out: str | Path, suite: str | None = None,
                 metric: str = "test_acc_macro", source: str = "", extra_figures=None) -> Path:
    out = Path(out)
    text = build_report(frame, suite=suite, metric=metric, source=source, extra_figures=extra_figures)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
