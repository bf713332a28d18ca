"""Base classes every primitive module builds on.

A primitive is a pair: a Pydantic config (:mod:`mad_bench.configs.primitives`: its typed,
bounded parameters, discriminated on ``type``) and an ``nn.Module`` built from that config.
Sequence mixers mix along time and offer a recurrent form (``init_state`` / ``step``) whose
outputs equal the parallel form; channel mixers act on each position alone, so their ``step``
is their ``forward`` on one token.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..configs.primitives.base import Kind, PrimitiveConfig


class Primitive(nn.Module):
    kind: ClassVar[Kind]
    tf32_in_bf16_runs: ClassVar[bool] = False
    """True where the layer computes fp32 islands under bf16 autocast that were checked right
    at TF32 on a GPU (``benchmarks/engine_check.py --fp32-matmul high``): a bf16 run of a model
    holding one takes its fp32 matmuls at TF32 (:func:`mad_bench.train.core.fp32_matmul`)."""

    def __init__(self, cfg: PrimitiveConfig, d_model: int, max_len: int):
        super().__init__()
        self.cfg = cfg
        self.d_model = d_model
        self.max_len = max_len

    def mixing_flops_per_token(self, seq_len: int) -> float:
        """FLOPs per token beyond the weight matmuls (attention scores, state updates...)."""
        return 0.0

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 x the weights used in matmuls, plus the mixing term."""
        matmul_params = sum(
            m.weight.numel() for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv1d))
        )
        return 2.0 * matmul_params + self.mixing_flops_per_token(seq_len)

    def aux_loss(self) -> torch.Tensor | None:
        """An auxiliary loss of the last forward (MoE load balancing), or None."""
        return None


class SequenceMixer(Primitive):
    kind: ClassVar[Kind] = "sequence"
    ops: ClassVar[tuple] = ()
    """The op families (``mad_bench.ops.<family>`` modules) the parallel form calls; ``cfg.impl``
    is passed to each, and each makes its own dispatch decision."""
    has_triton: ClassVar[bool] = False
    """True where an op of :attr:`ops` has a Triton kernel (``impl: triton`` is then valid);
    derived from the ops, never set by hand."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.has_triton = any(getattr(op, "HAS_TRITON", False) for op in cls.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None) -> Any:
        """The recurrent state before the first token (a tensor, or a tuple / dict of them)."""
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token: ``x_t[B, D] -> (y_t[B, D], new_state)``; equals ``forward`` at position t."""
        raise NotImplementedError

    def state_kind(self, device=None, dtype=None) -> dict:
        """``device`` / ``dtype`` keywords for a state tensor made by :meth:`init_state`: the
        ones asked for, else the parameters' (so ``.double()`` / ``.to(device)`` carry over),
        the dtype at least fp32 (states accumulate over the sequence: a bf16 model keeps fp32
        states, an fp64 model fp64 ones)."""
        ref = next((p for p in self.parameters() if p.is_floating_point()), None)
        if ref is None:
            ref = next((b for b in self.buffers() if b.is_floating_point()), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype or (ref.dtype if ref is not None else torch.float32)
        return {"device": device, "dtype": torch.promote_types(dtype, torch.float32)}


class ChannelMixer(Primitive):
    kind: ClassVar[Kind] = "channel"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None) -> Any:
        return None

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.forward(x_t[:, None])[:, 0], state


def state_numel(state: Any) -> int:
    """Elements held in a (nested) recurrent state."""
    if state is None:
        return 0
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(state_numel(v) for v in state.values())
    if isinstance(state, (tuple, list)):
        return sum(state_numel(v) for v in state)
    if isinstance(state, int):
        return 0
    raise TypeError(f"unsupported state element {type(state).__name__}")


def state_bytes(state: Any) -> int:
    if state is None or isinstance(state, int):
        return 0
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    return sum(state_bytes(v) for v in state)
