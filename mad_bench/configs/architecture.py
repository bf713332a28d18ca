"""The architecture spec: the single source of truth for a model.

A spec is a stack of layers, each a sequence mixer or a channel mixer from the primitive
registry, each wrapped in a norm and a residual; the layer list is repeated ``repeat`` times.
Task-dependent sizes (vocabulary, sequence length) come from the task, not from here.
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .primitives.base import PrimitiveConfig
from .registry import CONFIGS, suggest


# The version of the model-building code (compiler and primitives), part of every spec hash:
# bump it with any change to what a spec builds (initialisation, biases, a primitive's
# computation) that the spec text does not show, so that stored runs of the old model keep
# their old hash and are never averaged with runs of the new one.
#   1: (implicit, hashes without a version) until the MAD-Lab fidelity change
#   2: MAD-Lab's initialisation (embeddings N(0, 0.02), Linear biases zero; the autoencoder's
#      Linear weights N(0, 0.02)), a head with bias, MAD-Lab's autoencoder decoder, Hyena's
#      trainable positional features, Zoology's current BaseConv long filter
MODEL_VERSION = 2


def _layer_type() -> Any:
    return Annotated[Union[tuple(CONFIGS.values())], Field(discriminator="type")]  # type: ignore[valid-type]


LayerConfig = _layer_type()


class ArchitectureSpec(BaseModel):
    """An architecture: ``layers`` x ``repeat``, each layer ``norm -> primitive -> residual``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
                      description="identifier used in results tables and file names")
    description: str | None = None
    d_model: int = Field(128, ge=2, le=65536, description="model width")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_position: Literal["pre", "post"] = Field(
        "pre", description="pre: x + f(norm(x)) (MAD-Lab); post: norm(x + f(x))")
    backbone: Literal["lm", "autoencoder"] | None = Field(
        None, description="lm | autoencoder (MAD's compression task); None: the task decides")
    layers: list[LayerConfig] = Field(min_length=1, description="primitives, in order")  # type: ignore[valid-type]
    repeat: int = Field(1, ge=1, le=1024, description="how many times the layer list repeats")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    tie_embeddings: bool = False
    position_embedding: Literal["none", "learned", "sincos"] = Field(
        "none", description="absolute position embedding added to token embeddings (MAD: none)")

    @field_validator("layers", mode="before")
    @classmethod
    def _expand_bare_names(cls, layers: Any) -> Any:
        """``- mamba`` means ``- {type: mamba}``; unknown names get a did-you-mean hint."""
        if not isinstance(layers, list):
            return layers
        out = []
        for i, layer in enumerate(layers):
            if isinstance(layer, str):
                layer = {"type": layer}
            if isinstance(layer, dict) and isinstance(layer.get("type"), str):
                if layer["type"] not in CONFIGS:
                    raise ValueError(
                        f"layers[{i}].type: unknown primitive {layer['type']!r}{suggest(layer['type'])}"
                    )
            elif isinstance(layer, dict) and "type" not in layer:
                raise ValueError(f"layers[{i}]: a layer needs a 'type' (one of: "
                                 f"{', '.join(sorted(CONFIGS))})")
            elif not isinstance(layer, (dict, PrimitiveConfig)):
                raise ValueError(f"layers[{i}]: {layer!r} is not a primitive name or a mapping")
            out.append(layer)
        return out

    @model_validator(mode="after")
    def _check_layers_fit_width(self) -> "ArchitectureSpec":
        # width-dependent defaults the user left out follow d_model (a bare name builds at any width)
        fitted = [layer.at_width(self.d_model) for layer in self.layers]
        if any(a is not b for a, b in zip(fitted, self.layers)):
            object.__setattr__(self, "layers", fitted)  # frozen model: set once, while validating
        for i, layer in enumerate(self.layers):
            try:
                layer.check(self.d_model)
            except ValueError as exc:
                raise ValueError(f"layers[{i}] ({layer.type}): {exc}") from None
            if getattr(layer, "impl", None) == "triton" and not getattr(layer, "has_triton", False):
                raise ValueError(f"layers[{i}].impl: 'triton' is not available for {layer.type!r} "
                                 f"yet (valid: auto, torch)")
        return self

    # -- derived views ------------------------------------------------------------------
    @property
    def all_layers(self) -> list[PrimitiveConfig]:
        """The layer list with ``repeat`` applied: what the compiler builds."""
        return list(self.layers) * self.repeat

    def kind_of(self, layer: PrimitiveConfig) -> str:
        return layer.kind

    def primitives_summary(self) -> str:
        """'attention+swiglu x2' style summary of the stack."""
        names = "+".join(layer.type for layer in self.layers)
        return f"{names} x{self.repeat}" if self.repeat > 1 else names

    def sequence_mixers(self) -> list[str]:
        seen: list[str] = []
        for layer in self.layers:
            if self.kind_of(layer) == "sequence" and layer.type not in seen:
                seen.append(layer.type)
        return seen

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def config_json(self) -> str:
        """Everything that changes the model (not name or description) as canonical JSON: what
        the hash is of, and what result rows keep so that same-named specs can be told apart."""
        data = self.model_dump(mode="json", exclude={"name", "description"})
        data["model_version"] = MODEL_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """Hash of everything that changes the model (not name or description): the spec and
        ``MODEL_VERSION``, the version of the code that builds it (both in :meth:`config_json`)."""
        return hashlib.sha256(self.config_json().encode()).hexdigest()[:16]
