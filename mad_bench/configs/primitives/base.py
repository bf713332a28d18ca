"""What every primitive config builds on: typed, bounded parameters, discriminated on ``type``.

A config imports neither torch nor its module (``mad_bench.primitives``): specs, suites and
search spaces validate without building anything.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["sequence", "channel"]


class PrimitiveConfig(BaseModel):
    """Parameters of one layer. Unknown keys are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[Kind]
    type: str

    def width_defaults(self, d_model: int) -> dict[str, Any]:
        """Values fitted to ``d_model`` for the width-dependent fields (head counts, head sizes,
        rotary dims): the MAD default where it fits, the nearest fitting value below it else.
        Only fields the user left out take them (``at_width``); a written value is checked as is."""
        return {}

    def at_width(self, d_model: int) -> "PrimitiveConfig":
        """This config with the width-dependent defaults the user did not write fitted to d_model."""
        fitted = {k: v for k, v in self.width_defaults(d_model).items()
                  if k not in self.model_fields_set and getattr(self, k) != v}
        return self.model_copy(update=fitted) if fitted else self

    def fitted_heads(self, field: str, width: float) -> int:
        """The field's value if written, else the largest divisor of ``width`` up to its default."""
        if field in self.model_fields_set or width != int(width) or width < 1:
            return getattr(self, field)
        return largest_divisor(int(width), type(self).model_fields[field].default)

    def check(self, d_model: int) -> None:
        """Raise ``ValueError`` when the parameters cannot work at this width.

        The message names the field and the valid choices; spec validation prefixes it with
        the layer's path (``layers[2].n_heads: ...``).
        """


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is <= ``at_most`` (1 divides everything)."""
    return next(k for k in range(max(1, min(n, at_most)), 0, -1) if n % k == 0)


class SequenceMixerConfig(PrimitiveConfig):
    kind: ClassVar[Kind] = "sequence"
    has_triton: ClassVar[bool] = False
    """True where the module's ops have a Triton kernel (``impl: triton`` is then valid); the
    module registry checks at import that this agrees with the module's ops."""

    impl: Literal["auto", "triton", "torch"] = "auto"
    """Kernel dispatch: ``auto`` uses Triton on CUDA where a kernel exists, torch elsewhere."""


class ChannelMixerConfig(PrimitiveConfig):
    kind: ClassVar[Kind] = "channel"
