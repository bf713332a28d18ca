"""Load, dump and export architecture specs (YAML or JSON files, or dicts)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..configs.architecture import ArchitectureSpec
from ..configs.errors import SpecError, from_validation_error
from ..shipped import shipped_file

M = TypeVar("M", bound=BaseModel)
UNION_FIELDS = frozenset({"layers"})


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file into Python data, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise SpecError([("", "is a directory, not a spec file")], source=str(path))
    if not path.is_file():
        raise SpecError([("", "no such file")], source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError([("", "not a text file (YAML or JSON, UTF-8 encoded)")], str(path)) from None
    except OSError as exc:
        raise SpecError([("", f"cannot read: {exc.strerror or exc}")], str(path)) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError([("", f"not valid JSON: {exc.msg} at line {exc.lineno}")], str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([("", f"not valid YAML: {problem}{where}")], str(path)) from None


def validate_document(model: type[M], data: Any, source: str | None = None,
                      union_fields: frozenset[str] = UNION_FIELDS) -> M:
    """Validate parsed data into ``model``, turning pydantic errors into a SpecError."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError([("", f"expected a mapping of fields at the top level, got {kind}")], source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, union_fields, source, model=model) from None


def load_spec(source: str | Path | dict | ArchitectureSpec) -> ArchitectureSpec:
    """A spec from a YAML/JSON path, a dict, or an existing spec (returned as is)."""
    if isinstance(source, ArchitectureSpec):
        return source
    if isinstance(source, dict):
        return validate_document(ArchitectureSpec, source)
    path = shipped_file(source, "architectures")  # a shipped spec by name, from any directory
    return validate_document(ArchitectureSpec, read_document(path), source=str(source))


def dump_spec(spec: ArchitectureSpec, path: str | Path | None = None) -> str:
    """The spec as YAML (written to ``path`` if given, atomically)."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if path is not None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix.lower() == ".json":
            text = json.dumps(spec.to_dict(), indent=2) + "\n"
        tmp.write_text(text)
        tmp.replace(path)
    return text


def spec_json_schema() -> dict:
    return ArchitectureSpec.model_json_schema()
