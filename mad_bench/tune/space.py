"""Search-space files: a shipped name or a path, the base spec inline or a spec file. The model
(distributions, slots, constraints, scoring, sampling) is :mod:`mad_bench.configs.space`."""
from __future__ import annotations

from pathlib import Path

from ..configs.errors import SpecError
from ..configs.space import SearchSpace
from ..shipped import shipped_dir, shipped_file
from ..spec.io import read_document, validate_document

SPACES_DIR = shipped_dir("search_spaces")
ARCH_DIR = shipped_dir("architectures")


def resolve_space_path(name_or_path: str | Path) -> Path:
    path = shipped_file(name_or_path, "search_spaces")
    if path.is_file():
        return path
    for cand in (SPACES_DIR / path.name, SPACES_DIR / f"{path.name}.yaml"):
        if not path.suffix or path.parent == Path("."):
            if cand.is_file():
                return cand
    known = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    raise SpecError([("", f"no such search space file (shipped: {', '.join(known)})")], source=str(name_or_path))


def _resolve_base_file(ref: str, here: Path) -> Path:
    for cand in (here / ref, Path(ref), ARCH_DIR / ref, ARCH_DIR / f"{ref}.yaml"):
        if cand.is_file():
            return cand
    raise SpecError([("base", f"spec file {ref!r} not found (relative to {here} or architectures/)")])


def load_space(source: str | Path | dict) -> SearchSpace:
    """A search space from a file (path or shipped name) or a dict; SpecError with field paths."""
    if isinstance(source, dict):
        data, where, src = source, Path("."), None
    else:
        path = resolve_space_path(source)
        data, where, src = read_document(path), path.parent, str(path)
    if isinstance(data, dict) and isinstance(data.get("base"), str):
        data = {**data, "base": read_document(_resolve_base_file(data["base"], where))}
    return validate_document(SearchSpace, data, source=src, union_fields=frozenset())
