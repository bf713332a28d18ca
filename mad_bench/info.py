"""Per-layer cost summary of a compiled model: parameters, FLOPs per token, state bytes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .compiler import _Model, build_model
from .configs.architecture import ArchitectureSpec
from .primitives.base import state_bytes


@dataclass
class LayerCost:
    index: str
    primitive: str
    kind: str
    params: int
    flops_per_token: float
    state_bytes: int


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_costs(model: _Model, seq_len: int) -> list[LayerCost]:
    """One row per layer plus embedding and head rows (state bytes at fp32, one sequence)."""
    d, vocab = model.spec.d_model, model.vocab_size
    rows = [LayerCost("-", "embedding", "-", _params(model.embed)
                      + (model.pos_embed.numel() if isinstance(model.pos_embed, torch.nn.Parameter) else 0),
                      0.0, 0)]
    for i, block in enumerate(model.stack.blocks):
        mixer = block.mixer
        norm_flops = 4.0 * d
        with torch.no_grad():
            nbytes = state_bytes(mixer.init_state(1, device="cpu", dtype=torch.float32))
        rows.append(LayerCost(str(i), mixer.cfg.type, mixer.kind, _params(block),
                              mixer.flops_per_token(seq_len) + norm_flops, nbytes))
    extra = _params(model) - sum(r.params for r in rows)  # head (if untied), decoder, final norm
    rows.append(LayerCost("-", "head", "-", extra, 2.0 * d * vocab, 0))
    return rows


def summarize(spec: ArchitectureSpec, vocab_size: int, seq_len: int,
              backbone: str | None = None) -> tuple[list[LayerCost], LayerCost]:
    model = build_model(spec, vocab_size=vocab_size, max_len=seq_len, backbone=backbone)
    rows = layer_costs(model, seq_len)
    total = LayerCost("", "total", "", model.num_params(), sum(r.flops_per_token for r in rows),
                      sum(r.state_bytes for r in rows))
    return rows, total
