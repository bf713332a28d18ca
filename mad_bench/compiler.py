"""Spec -> torch model. Two backbones, both reading the same layer stack:

* ``lm``: tokens -> embedding -> blocks -> norm -> head; logits at every position. Offers
  ``init_state`` / ``step`` for token-by-token decoding, equal to the parallel logits.
* ``autoencoder`` (MAD's compression task): the stack encodes the sequence (no final norm), the
  last position is the code; a fixed MLP decoder (norm-Linear-GELU-norm-Linear-GELU) on the code
  plus sin-cos position embeddings, then norm -> head, reconstructs every token from it.

Both follow MAD-Lab's backbones (``mad/model/language_model.py``, ``mad/model/auto_encoder.py``
of athms/mad-lab), initialisation included: see ``init_language_model`` and
``init_autoencoder``. The head is a Linear with bias, as MAD-Lab's ``lm_head`` / ``unembed``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .configs.architecture import ArchitectureSpec
from .configs.primitives.base import PrimitiveConfig
from .primitives import REGISTRY
from .primitives.base import Primitive
from .primitives.norms import make_norm
from .spec import load_spec


INIT_STD = 0.02  # MAD-Lab's ``initializer_range``


def init_language_model(model: nn.Module) -> None:
    """MAD-Lab's ``LanguageModel._init_weights`` (mad/model/language_model.py), applied to every
    module of the model, mixers included: each ``nn.Embedding`` ~ N(0, 0.02); each ``nn.Linear``
    bias zero, unless the bias is marked ``_no_reinit`` (a primitive whose own initialisation
    sets a bias, as mamba_ssm marks Mamba's dt bias); Linear weights keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if m.bias is not None and not getattr(m.bias, "_no_reinit", False):
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)


def init_autoencoder(model: nn.Module) -> None:
    """MAD-Lab's ``AutoEncoder._init_weights`` (mad/model/auto_encoder.py), applied to every
    module, the encoder's mixers included: each ``nn.Linear`` weight ~ N(0, 0.02) and bias zero,
    each ``nn.Embedding`` ~ N(0, 0.02). MAD-Lab's autoencoder does not check ``_no_reinit``, so
    a primitive's own Linear initialisation (Mamba's dt projection and dt bias, the xLSTM gate
    biases) is overwritten here too; that is the code that produced the paper's compression
    numbers, and it is followed as written."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)


def decoder_position_table(max_len: int, d_model: int) -> torch.Tensor:
    """The autoencoder decoder's position embedding, MAD-Lab's ``posemb_sincos_1d``
    (mad/model/layers/featurization/posemb.py, fairseq's layout): H = d_model // 2 frequencies
    f_i = 10000^(-i / (H - 1)), the table is [sin(p f) | cos(p f)] (not interleaved), a zero
    column appended when d_model is odd. (At d_model 2 or 3, H - 1 = 0 divides by zero in
    MAD-Lab; here the one frequency is 1.)"""
    half = d_model // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freq = torch.exp(torch.arange(half, dtype=torch.float64) * -step)
    angle = torch.arange(max_len, dtype=torch.float64)[:, None] * freq[None]
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    if d_model % 2:
        table = torch.cat([table, torch.zeros(max_len, 1, dtype=torch.float64)], dim=1)
    return table.float()


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
    """The spec's blocks plus (``final_norm``) the final norm of a pre-norm stack."""

    def __init__(self, spec: ArchitectureSpec, max_len: int, final_norm: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, spec, max_len) for cfg in spec.all_layers)
        pre = spec.norm_position == "pre"
        self.final_norm = make_norm(spec.norm, spec.d_model) if pre and final_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class _Model(nn.Module):
    backbone: str
    final_norm = True  # the encoder stack ends in a norm (the LM's; the autoencoder has none)

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
        self.stack = Stack(spec, max_len, final_norm=self.final_norm)
        self.head = nn.Linear(d, vocab_size)  # with bias: MAD-Lab's lm_head / unembed Linear
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
        # no walrus in the comprehension: its variable becomes a closure cell, which dynamo
        # cannot read ("Read uninitialized cell"), and the engine's step would run uncompiled
        losses = [b.mixer.aux_loss() for b in self.stack.blocks]
        losses = [loss for loss in losses if loss is not None]
        return torch.stack(losses).sum() if losses else None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LanguageModel(_Model):
    """Next-token model: ``forward(tokens[B, L]) -> logits[B, L, V]``."""

    backbone = "lm"

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, max_len: int):
        super().__init__(spec, vocab_size, max_len)
        init_language_model(self)

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
    """MAD's compression model (MAD-Lab's ``AutoEncoder``, global_pool 'last'): encode with no
    final norm, keep the last position as the code, add the decoder's sin-cos position table,
    decode with norm-Linear-GELU-norm-Linear-GELU (width d_model), then norm -> head."""

    backbone = "autoencoder"
    final_norm = False

    def __init__(self, spec: ArchitectureSpec, vocab_size: int, max_len: int):
        super().__init__(spec, vocab_size, max_len)
        d = spec.d_model
        self.register_buffer("decoder_pos", decoder_position_table(max_len, d), persistent=False)
        self.decoder = nn.Sequential(make_norm(spec.norm, d), nn.Linear(d, d), nn.GELU(),
                                     make_norm(spec.norm, d), nn.Linear(d, d), nn.GELU())
        self.head_norm = make_norm(spec.norm, d)
        init_autoencoder(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check_tokens(tokens)
        code = self.stack(self._embed(tokens))[:, -1:]  # [B, 1, D]
        z = code + self.decoder_pos[: tokens.shape[1]]
        return self.head(self.head_norm(self.decoder(z)))

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
