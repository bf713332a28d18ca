"""The README's commands as written: every ``madbench`` line parses with the real parser, and
its reading commands (results, leaderboard, plot, report) run on a fresh clone's results/."""
import re
import shlex
from pathlib import Path

import pytest

from mad_bench.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """``madbench`` command lines of the README's bash blocks (continuations joined, comments,
    redirections and shell placeholders left out)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].split(">")[0].strip()
            if line.startswith("madbench "):
                commands.append(shlex.split(line)[1:])
    return commands


COMMANDS = readme_commands()
SHIPPED_STORES = [p.parent.name for p in sorted((ROOT / "results").glob("*/runs")) if any(p.glob("*.parquet"))]
READING = [c for c in COMMANDS if c[0] in ("results", "leaderboard", "plot", "report")]


def test_readme_has_commands():
    assert len(COMMANDS) > 15 and len(READING) >= 4
    assert any(c[0] == "search" for c in COMMANDS) and any(c[0] == "tune" for c in COMMANDS)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda c: " ".join(c)[:60])
def test_readme_command_parses(argv):
    args = build_parser().parse_args(argv)
    assert callable(args.func)


@pytest.mark.parametrize("argv", [c for c in READING if "--results" in c], ids=lambda c: " ".join(c)[:60])
def test_readme_reading_command_runs_on_a_fresh_clone(argv, tmp_path, monkeypatch, capsys):
    """A fresh clone's results/ holds only the shipped stores (the tracked ones)."""
    (tmp_path / "results").mkdir()
    for store in SHIPPED_STORES:
        (tmp_path / "results" / store).symlink_to(ROOT / "results" / store)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0, capsys.readouterr().err

