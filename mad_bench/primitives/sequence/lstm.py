"""Long short-term memory (Hochreiter & Schmidhuber, 1997), one layer, via ``torch.nn.LSTM``.

    i_t, f_t, o_t = sigmoid(W_{i,f,o} x_t + U_{i,f,o} h_{t-1} + b_{i,f,o})
    g_t           = tanh(W_g x_t + U_g h_{t-1} + b_g)
    c_t           = f_t . c_{t-1} + i_t . g_t
    h_t           = o_t . tanh(c_t)
    y_t           = h_t W_out                     (identity when ``out_proj`` is False)

Inherently sequential: the parallel form is cuDNN's / ATen's fused LSTM over the sequence;
``step`` runs the same module on one token with the (h, c) state.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..base import SequenceMixer, SequenceMixerConfig
from ..registry import register


class LSTMConfig(SequenceMixerConfig):
    type: Literal["lstm"] = "lstm"
    d_hidden: int | None = Field(None, ge=1, description="hidden width (None: d_model)")
    out_proj: bool = Field(True, description="linear output projection d_hidden -> d_model")
    bias: bool = True

    def check(self, d_model: int) -> None:
        if not self.out_proj and self.d_hidden not in (None, d_model):
            raise ValueError(
                f"d_hidden={self.d_hidden} must equal d_model={d_model} when out_proj is False"
            )


@register(LSTMConfig)
class LSTM(SequenceMixer):
    """Single-layer LSTM with an optional output projection."""

    def __init__(self, cfg: LSTMConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        self.d_hidden = cfg.d_hidden or d_model
        self.rnn = nn.LSTM(d_model, self.d_hidden, num_layers=1, bias=cfg.bias, batch_first=True)
        self.out = nn.Linear(self.d_hidden, d_model, bias=False) if cfg.out_proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        return self.out(h)

    def init_state(self, batch_size: int, device=None, dtype=None):
        shape = (1, batch_size, self.d_hidden)
        zeros = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        return (zeros, zeros.clone())

    def step(self, x_t: torch.Tensor, state):
        h, (h_n, c_n) = self.rnn(x_t[:, None], state)
        return self.out(h[:, 0]), (h_n, c_n)

    def flops_per_token(self, seq_len: int) -> float:
        rnn = sum(p.numel() for n, p in self.rnn.named_parameters() if n.startswith("weight"))
        out = self.out.weight.numel() if isinstance(self.out, nn.Linear) else 0
        return 2.0 * (rnn + out) + self.mixing_flops_per_token(seq_len)

    def mixing_flops_per_token(self, seq_len: int) -> float:
        return 10.0 * self.d_hidden  # gate nonlinearities and the cell update
