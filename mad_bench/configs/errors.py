"""One error type for every bad spec, suite or search-space file: a list of (path, message).

Printed one per line as ``path: message`` (``layers[3].type: unknown primitive 'mamab'
(did you mean 'mamba'?)``), never as a traceback.
"""
from __future__ import annotations

import difflib
import re
import typing

from pydantic import BaseModel, ValidationError

# A validator message that starts with its own, more precise path: "layers[3].type: ..."
_OWN_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])+(?:\.\w+)*(?: \([\w-]+\))?): (.*)$", re.S)


class SpecError(ValueError):
    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{path}: {msg}" if path else f"{prefix}{msg}"
                         for path, msg in self.problems)


def loc_to_path(loc: tuple, union_fields: frozenset[str] = frozenset()) -> str:
    """('layers', 3, 'attention', 'n_heads') -> 'layers[3].n_heads' (drops union tags)."""
    parts: list[str] = []
    after_union_index = False
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            after_union_index = i > 0 and loc[i - 1] in union_fields
            continue
        if after_union_index:  # the discriminator tag pydantic inserts after the index
            after_union_index = False
            continue
        if item.startswith("function-"):  # pydantic's internal validator labels
            continue
        parts.append(("." if parts else "") + item)
    return "".join(parts)


def _describe(err: dict) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key (value {err['input']!r})"
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short" and isinstance(err.get("input"), list) and not err["input"]:
        return "is empty; give at least one entry"
    if kind in ("value_error", "assertion_error"):
        return msg
    value = err.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if kind == "literal_error":
        return f"{shown} is not valid; {msg[0].lower()}{msg[1:]}"
    return f"{shown} is not valid: {msg[0].lower()}{msg[1:]}"


def _models_in(annotation) -> list[type[BaseModel]]:
    """The Pydantic models an annotation can hold (through list[...], Optional, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str] | None:
    """Field names valid in the mapping that holds ``loc[-1]`` (None when unknown)."""
    candidates = [model] if model is not None else []
    for item in loc[:-1]:
        if isinstance(item, int) or not candidates:
            continue
        if len(candidates) > 1:  # a union: pydantic's next loc item is the member's tag
            tagged = [c for c in candidates
                      if any(f.default == item for f in c.model_fields.values())]
            if tagged:
                candidates = tagged
                continue
        field = candidates[0].model_fields.get(item)
        candidates = _models_in(field.annotation) if field is not None else []
    if len(candidates) != 1:
        return None
    return list(candidates[0].model_fields)


def _unknown_key_hint(key, valid: list[str] | None) -> str:
    if not valid:
        return ""
    close = difflib.get_close_matches(str(key), valid, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid: {', '.join(valid)})"


def from_validation_error(
    exc: ValidationError, union_fields: frozenset[str] = frozenset(), source: str | None = None,
    model: type[BaseModel] | None = None,
) -> SpecError:
    """One problem per pydantic error; ``model`` lets unknown keys list the valid ones."""
    problems = []
    for err in exc.errors():
        path, msg = loc_to_path(tuple(err["loc"]), union_fields), _describe(err)
        if err["type"] == "extra_forbidden":
            msg += _unknown_key_hint(err["loc"][-1], fields_at(model, tuple(err["loc"])))
        own = _OWN_PATH.match(msg)
        if own and err["type"] == "value_error":
            path, msg = own.group(1), own.group(2)
        problems.append((path, msg))
    return SpecError(problems, source)
