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
    """``path`` if it exists; else the shipped file it names (``transformer``,
    ``transformer.yaml`` or ``architectures/transformer.yaml`` run from another directory)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    if path.parent not in (Path("."), Path(folder)):
        return path
    base = shipped_dir(folder)
    for cand in (base / path.name, base / f"{path.name}.yaml"):
        if cand.is_file():
            return cand
    return path
