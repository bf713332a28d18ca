"""Spec -> torch model. Two backbones, both reading the same layer stack:

* ``lm``: tokens -> embedding -> blocks -> norm -> head; logits at every position. Offers
  ``init_state`` / ``step`` for token-by-token decoding, equal to the parallel logits.
* ``autoencoder`` (MAD's compression task): the stack encodes the sequence, the last position
  is the code; a fixed 2-layer MLP decoder with sin-cos position embeddings reconstructs
  every token from it.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .primitives import REGISTRY
from .primitives.base import Primitive, PrimitiveConfig
from .primitives.norms import make_norm
from .spec import ArchitectureSpec, load_spec


def sincos_table(max_len: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table.float()


class Block(nn.Module):
    """norm -> primitive -> residual (pre-norm, MAD-Lab's layout) or primitive -> residual -> norm."""

    def __init__(self, cfg: PrimitiveConfig, spec: ArchitectureSpec, max_len: int):
        super().__init__()
        self.norm = make_norm(spec.norm, spec.d_model)
        self.mixer: Primitive = REGISTRY[cfg.type].module(cfg, spec.d_model, max_len)
        self.dropout = nn.Dropout(spec.dropout)
        self.pre_norm = spec.norm_position == "pre"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(self.mixer(self.norm(x)))
        return self.norm(x + self.dropout(self.mixer(x)))

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if self.pre_norm:
            y, state = self.mixer.step(self.norm(x_t), state)
            return x_t + self.dropout(y), state
        y, state = self.mixer.step(x_t, state)
        return self.norm(x_t + self.dropout(y)), state


class Stack(nn.Module):
    """The spec's blocks plus the final norm of a pre-norm stack."""

    def __init__(self, spec: ArchitectureSpec, max_len: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, spec, max_len) for cfg in spec.all_layers)
        self.final_norm = make_norm(spec.norm, spec.d_model) if spec.norm_position == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class _Model(nn.Module):
    backbone: str

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, max_len: int):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size={vocab_size} must be at least 2")
        if max_len < 1:
            raise ValueError(f"max_len={max_len} must be at least 1")
        self.spec, self.vocab_size, self.max_len = spec, vocab_size, max_len
        d = spec.d_model
        self.embed = nn.Embedding(vocab_size, d)
        if spec.position_embedding == "learned":
            self.pos_embed = nn.Parameter(torch.randn(max_len, d) * 0.02)
        elif spec.position_embedding == "sincos":
            self.register_buffer("pos_embed", sincos_table(max_len, d), persistent=False)
        else:
            self.pos_embed = None
        self.stack = Stack(spec, max_len)
        self.head = nn.Linear(d, vocab_size, bias=False)
        if spec.tie_embeddings:
            self.head.weight = self.embed.weight

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dtype not in (torch.int64, torch.int32) or tokens.dim() != 2:
            raise ValueError(f"tokens must be an integer tensor [batch, length], got "
                             f"{tuple(tokens.shape)} {tokens.dtype}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len={self.max_len}")

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed[: tokens.shape[1]]
        return x

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the layers' auxiliary losses of the last forward (MoE load balancing)."""
        losses = [l for b in self.stack.blocks if (l := b.mixer.aux_loss()) is not None]
        return torch.stack(losses).sum() if losses else None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LanguageModel(_Model):
    """Next-token model: ``forward(tokens[B, L]) -> logits[B, L, V]``."""

    backbone = "lm"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check_tokens(tokens)
        return self.head(self.stack(self._embed(tokens)))

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        device = device or self.embed.weight.device
        return {"pos": 0, "layers": [b.mixer.init_state(batch_size, device=device, dtype=dtype)
                                     for b in self.stack.blocks]}

    def step(self, tokens_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token per sequence: ``tokens_t[B] -> (logits_t[B, V], state)``."""
        pos = state["pos"]
        if pos >= self.max_len:
            raise ValueError(f"step beyond max_len={self.max_len}")
        x = self.embed(tokens_t)
        if self.pos_embed is not None:
            x = x + self.pos_embed[pos]
        new_layers = []
        for block, layer_state in zip(self.stack.blocks, state["layers"]):
            x, layer_state = block.step(x, layer_state)
            new_layers.append(layer_state)
        return self.head(self.stack.final_norm(x)), {"pos": pos + 1, "layers": new_layers}


class Autoencoder(_Model):
    """MAD's compression model: encode, keep the last position, decode every token from it."""

    backbone = "autoencoder"

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, max_len: int):
        super().__init__(spec, vocab_size, max_len)
        d = spec.d_model
        self.register_buffer("decoder_pos", sincos_table(max_len, d), persistent=False)
        self.decoder = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.decoder_norm = make_norm(spec.norm, d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check_tokens(tokens)
        code = self.stack(self._embed(tokens))[:, -1:]  # [B, 1, D]
        z = code + self.decoder_pos[: tokens.shape[1]]
        return self.head(self.decoder_norm(self.decoder(z)))

    def init_state(self, *args, **kwargs):
        raise TypeError("the autoencoder backbone has no token-by-token form; use backbone 'lm'")

    step = init_state


BACKBONES = {"lm": LanguageModel, "autoencoder": Autoencoder}


def build_model(spec: ArchitectureSpec | dict | str, vocab_size: int, max_len: int,
                backbone: str | None = None) -> _Model:
    """Compile a spec. ``backbone`` (from the task) is used when the spec leaves it open;
    a spec that fixes a different backbone than the task needs is an error."""
    spec = load_spec(spec)
    chosen = spec.backbone or backbone or "lm"
    if backbone is not None and spec.backbone is not None and spec.backbone != backbone:
        raise ValueError(f"spec {spec.name!r} has backbone {spec.backbone!r} but the task needs "
                         f"{backbone!r}; remove 'backbone' from the spec or pick another task")
    return BACKBONES[chosen](spec, vocab_size, max_len)
