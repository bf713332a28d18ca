"""Where the shipped folders are: ``architectures/``, ``tasks/`` (suites) and ``search_spaces/``.

They live at the top of the repository (next to ``mad_bench/``). A wheel carries copies inside
the package (``mad_bench/_shipped/<folder>``, made by ``setup.py``'s build step), so an installed
``madbench`` finds them from any directory; a checkout uses its own top-level folders.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
FOLDERS = ("architectures", "tasks", "search_spaces")


def shipped_dir(folder: str) -> Path:
    """The installed copy of a shipped folder if there is one, else the checkout's."""
    if folder not in FOLDERS:
        raise ValueError(f"{folder!r} is not a shipped folder (valid: {', '.join(FOLDERS)})")
    installed = PACKAGE / "_shipped" / folder
    return installed if installed.is_dir() else PACKAGE.parent / folder


def shipped_file(path: str | Path, folder: str) -> Path:
    """``path`` if it exists; else the shipped file it names, nested folders included:
    ``transformer``, ``transformer.yaml``, ``architectures/transformer.yaml``,
    ``zoology/based``, ``zoology/based.yaml`` or ``architectures/zoology/based.yaml`` run from
    another directory."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    parts = path.parts
    if parts and parts[0] == folder:  # the checkout's relative path: drop the folder's name
        parts = parts[1:]
    if not parts or ".." in parts:
        return path
    base = shipped_dir(folder)
    rel = Path(*parts)
    for cand in (base / rel, base / rel.with_name(f"{rel.name}.yaml")):
        if cand.is_file():
            return cand
    return path
