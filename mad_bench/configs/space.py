"""The search-space model (``search_spaces/*.yaml``): a base spec plus the choices Optuna samples.

A space holds a ``base`` spec (inline mapping or a spec file), and any of:

- ``pattern``: candidate layer lists (e.g. which slots of a striped hybrid are attention);
- ``d_model`` / ``repeat``: width and depth choices;
- ``slots``: a primitive per layer index from a set, with conditional parameters
  (``params: {attention: {n_heads: [4, 8]}}`` exists only when ``attention`` is chosen);
- ``params``: per-primitive parameters shared by every layer of that primitive (conditional:
  sampled only when some layer uses it);
- ``constraints``: ``max_params`` / ``max_state_bytes`` (a sampled spec over budget is pruned);
- ``training``: TrainConfig fields to tune (``lr: {low: 1e-4, high: 1e-2, log: true}``);
- ``scoring``: how a trial scores its spec on the suite: ``grid`` (the suite's lr x wd grid, MAD's
  protocol), ``fixed`` (the sampled training values, one run per setting) or ``tune`` (a small
  inner study per setting over ``training``).

A distribution is ``{choices: [...]}`` (or a bare list) or ``{low, high, log?, step?, int?}``.

Loading a space file (a shipped name, a path, a base spec file): :mod:`mad_bench.tune.space`.
"""
from __future__ import annotations

import copy
import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
    model_validator,
)

from .architecture import ArchitectureSpec
from .errors import from_validation_error
from .registry import CONFIGS, suggest
from .train import TrainConfig


def _as_dist(value: Any) -> Any:
    if isinstance(value, list):
        return {"choices": value}
    if isinstance(value, (int, float, str, bool)) and not isinstance(value, dict):
        return {"choices": [value]}
    return value


class Dist(BaseModel):
    """One sampled value: categorical ``choices`` or a numeric range ``low..high``."""
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    choices: list[Any] | None = Field(None, min_length=1)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    int: bool | None = Field(None, description="integer range (default: low and high are ints)")

    @model_validator(mode="after")
    def _check(self) -> "Dist":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            for c in self.choices:
                if not (c is None or isinstance(c, (bool, int, float, str))):
                    raise ValueError(f"choice {c!r} is not a scalar (bool, int, float, str)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or both low and high")
        if self.low > self.high:
            raise ValueError(f"low={self.low} is above high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (low={self.low})")
        return self

    @property
    def is_int(self) -> bool:
        if self.int is not None:
            return self.int
        return float(self.low).is_integer() and float(self.high).is_integer() and not self.log \
            and (self.step is None or float(self.step).is_integer())

    def suggest(self, trial, name: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def values(self) -> list[Any] | None:
        """Every value (for a grid), or None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return None


DistField = Annotated[Dist, BeforeValidator(_as_dist)]


def _check_primitive(name: str) -> str:
    if name not in CONFIGS:
        raise ValueError(f"unknown primitive {name!r}{suggest(name)}")
    return name


def _check_params(prim: str, params: dict[str, Any]) -> None:
    fields = set(CONFIGS[prim].model_fields) - {"type"}
    for p in params:
        if p not in fields:
            close = difflib.get_close_matches(p, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(fields))})"
            raise ValueError(f"{prim}.{p}: unknown parameter of {prim!r}{hint}")


class Slot(BaseModel):
    """A primitive per layer index, chosen from a set; its parameters are conditional."""
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    index: int | list[int] = Field(description="layer index (or indices) in the base layer list")
    choices: list[Annotated[str, AfterValidator(_check_primitive)]] = Field(
        min_length=1, description="primitive names")
    params: dict[str, dict[str, DistField]] = Field(
        default_factory=dict, description="primitive -> parameter -> distribution")

    @model_validator(mode="after")
    def _params_for_choices(self) -> "Slot":
        for prim, params in self.params.items():
            if prim not in self.choices:
                raise ValueError(f"params.{prim}: {prim!r} is not one of this slot's choices")
            _check_params(prim, params)
        return self

    @property
    def indices(self) -> list[int]:
        return [self.index] if isinstance(self.index, int) else list(self.index)


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    max_params: int | None = Field(None, ge=1, description="largest model (over the suite's settings)")
    max_state_bytes: int | None = Field(None, ge=1, description="largest state / KV cache per sequence")


class Scoring(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    mode: Literal["grid", "fixed", "tune"] = Field(
        "grid", description="grid: the suite's lr x wd grid; fixed: sampled training values; "
                            "tune: an inner study per setting over `training`")
    tune_trials: int = Field(4, ge=1, description="inner trials per setting (mode tune)")
    baseline_only: bool = Field(True, description="score on each task's baseline setting only")
    tasks: list[str] | None = Field(None, description="only these tasks of the suite")


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    description: str | None = None
    base: dict[str, Any] | None = Field(None, description="the base spec (mapping or a spec file path)")
    pattern: list[list[Any]] | None = Field(None, min_length=1, description="candidate layer lists")
    d_model: DistField | None = None
    repeat: DistField | None = None
    slots: list[Slot] = Field(default_factory=list)
    params: dict[str, dict[str, DistField]] = Field(
        default_factory=dict, description="primitive -> parameter -> distribution (shared by layers)")
    constraints: Constraints = Field(default_factory=Constraints)
    training: dict[str, DistField] = Field(default_factory=dict, description="TrainConfig field -> distribution")
    scoring: Scoring = Field(default_factory=Scoring)

    @field_validator("base")
    @classmethod
    def _valid_base(cls, base: dict | None) -> dict | None:
        if base is None:
            return base
        try:
            ArchitectureSpec.model_validate(base)
        except ValidationError as exc:
            problems = from_validation_error(exc, frozenset({"layers"}), model=ArchitectureSpec).problems
            raise ValueError("; ".join(f"base.{p}: {m}" if p else f"base: {m}" for p, m in problems)) from None
        return base

    @field_validator("training")
    @classmethod
    def _train_fields(cls, training: dict) -> dict:
        fields = set(TrainConfig.model_fields)
        for key in training:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"training.{key}: not a training hyperparameter{hint}")
        return training

    @field_validator("params")
    @classmethod
    def _prim_params(cls, params: dict) -> dict:
        for prim, ps in params.items():
            _check_primitive(prim)
            _check_params(prim, ps)
        return params

    @field_validator("pattern")
    @classmethod
    def _pattern_layers(cls, pattern):
        for i, layers in enumerate(pattern or []):
            for j, layer in enumerate(layers):
                name = layer if isinstance(layer, str) else (layer or {}).get("type") if isinstance(layer, dict) else None
                if not isinstance(name, str):
                    raise ValueError(f"pattern[{i}][{j}]: {layer!r} is not a primitive name or a mapping with a type")
                try:
                    _check_primitive(name)
                except ValueError as exc:
                    raise ValueError(f"pattern[{i}][{j}]: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _slots_in_range(self) -> "SearchSpace":
        if self.base is None:
            return self
        n = min([len(p) for p in self.pattern] if self.pattern else [len(self.base.get("layers", []))])
        for i, slot in enumerate(self.slots):
            for idx in slot.indices:
                if not 0 <= idx < n:
                    raise ValueError(f"slots[{i}].index: layer {idx} does not exist (the layer list has {n})")
        return self

    # -- sampling ------------------------------------------------------------------------
    def pattern_labels(self) -> list[str]:
        labels = [",".join(l if isinstance(l, str) else l["type"] for l in p) for p in self.pattern or []]
        if len(set(labels)) != len(labels):
            labels = [f"p{i}:{lab}" for i, lab in enumerate(labels)]
        return labels

    def sample(self, trial, name: str, training_keys: set[str] | None = None) -> tuple[dict, dict]:
        """(spec dict, training overrides) for an Optuna trial. Conditional parameters are
        suggested only when their primitive is chosen. The dict may still be an invalid spec."""
        if self.base is None:
            raise ValueError(f"search space {self.name!r} has no base spec (it can only tune training)")
        spec = copy.deepcopy(self.base)
        spec["name"] = name
        spec.pop("description", None)
        if self.pattern:
            labels = self.pattern_labels()
            chosen = trial.suggest_categorical("pattern", labels)
            spec["layers"] = copy.deepcopy(self.pattern[labels.index(chosen)])
        layers = [dict(l) if isinstance(l, dict) else {"type": l} for l in spec["layers"]]
        if self.d_model is not None:
            spec["d_model"] = self.d_model.suggest(trial, "d_model")
        if self.repeat is not None:
            spec["repeat"] = self.repeat.suggest(trial, "repeat")
        fixed: set[tuple[int, str]] = set()
        for slot in self.slots:
            for idx in slot.indices:
                prim = trial.suggest_categorical(f"slot{idx}", slot.choices)
                layer = {"type": prim} if layers[idx].get("type") != prim else dict(layers[idx])
                for pname, dist in slot.params.get(prim, {}).items():
                    layer[pname] = dist.suggest(trial, f"slot{idx}.{prim}.{pname}")
                    fixed.add((idx, pname))
                layers[idx] = layer
        for prim, ps in self.params.items():
            users = [i for i, l in enumerate(layers) if l["type"] == prim]
            if not users:
                continue  # conditional: the primitive was not chosen
            for pname, dist in ps.items():
                value = dist.suggest(trial, f"{prim}.{pname}")
                for i in users:
                    if (i, pname) not in fixed:
                        layers[i][pname] = value
        spec["layers"] = layers
        keys = set(self.training) if training_keys is None else training_keys
        training = {k: d.suggest(trial, f"train.{k}") for k, d in self.training.items() if k in keys}
        return spec, training
