"""Parameters of the ``hyena`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.hyena`."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_serializer

from .base import SequenceMixerConfig


class HyenaConfig(SequenceMixerConfig):
    type: Literal["hyena"] = "hyena"
    has_triton: ClassVar[bool] = True
    order: int = Field(2, ge=2, description="depth of the Hyena recurrence (number of gates)")
    inner_factor: int = Field(4, ge=1, description="inner width = inner_factor x d_model")
    proj_groups: int = Field(4, ge=1, description="tied projection groups (in-proj is tiled)")
    num_heads: int = Field(1, ge=1, description="heads sharing the long filters; divides inner")
    short_filter_order: int = Field(3, ge=1, description="length of the short depthwise filter")
    filter_order: int = Field(4, ge=1, description="width of the implicit filter FFN")
    emb_dim: int = Field(3, ge=3, description="positional features: t plus cos/sin bands (odd)")
    filter_depth: int = Field(2, ge=0, description="inner layers of the implicit filter FFN")
    filter_w: float = Field(1.0, gt=0.0, description="initial frequency of the sine activation")
    modulate: bool = True
    fast_decay_pct: float = Field(0.3, gt=0.0)
    slow_decay_pct: float = Field(1.5, gt=0.0)
    decay_target: float = Field(1e-2, gt=0.0, lt=1.0)
    bias: bool = Field(True, description="the long conv's skip term D")
    mode: Literal["gated", "outer-product"] = Field(
        "gated", description="gated: Hyena's chain of gates; outer-product: MAD-Lab's mh-hyena")
    head_dim: int = Field(16, ge=1, description="outer-product mode: channels per head "
                                                "(MAD-Lab's mh-hyena num_heads)")

    @model_serializer(mode="wrap")
    def _omit_mode_defaults(self, handler):
        """Leave the mode fields out while they are unused, so that specs written before the
        mode existed keep their hash (and the results store its keys)."""
        data = handler(self)
        if self.mode == "gated":
            data.pop("mode", None)
            data.pop("head_dim", None)
        return data

    def check(self, d_model: int) -> None:
        inner = self.inner_factor * d_model
        if ((self.order + 1) * inner) % self.proj_groups:
            raise ValueError(
                f"proj_groups={self.proj_groups} must divide (order+1) * inner_factor * d_model"
                f" = {(self.order + 1) * inner}"
            )
        if inner % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide inner_factor * d_model = {inner}"
            )
        if self.emb_dim % 2 == 0:
            raise ValueError(f"emb_dim={self.emb_dim} must be odd (t plus cos/sin pairs)")
        if self.mode == "outer-product":
            if self.order != 2:
                raise ValueError(f"order={self.order}: mode outer-product is order 2 only")
            if self.num_heads != 1:
                raise ValueError(f"num_heads={self.num_heads}: mode outer-product sets its heads "
                                 f"by head_dim (MAD-Lab's num_heads); leave num_heads at 1")
            if inner % self.head_dim:
                raise ValueError(f"head_dim={self.head_dim} must divide inner_factor * d_model = {inner}")
