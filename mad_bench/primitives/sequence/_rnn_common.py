"""What LSTM and GRU share: a one-layer ``torch.nn`` RNN with an optional output projection.

The parallel form is the fused RNN over the sequence; ``step`` runs the same module on one
token with the RNN's own state, so the two agree by construction.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...configs.primitives._rnn import TorchRNNConfig
from ..base import SequenceMixer


class TorchRNN(SequenceMixer):
    rnn_class: ClassVar[type[nn.RNNBase]]
    state_tensors: ClassVar[int]            # 2 for LSTM (h, c), 1 for GRU (h)
    update_flops_per_unit: ClassVar[float]  # gate nonlinearities and the state update

    def __init__(self, cfg: TorchRNNConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        self.d_hidden = cfg.d_hidden or d_model
        self.rnn = self.rnn_class(d_model, self.d_hidden, num_layers=1, bias=cfg.bias,
                                  batch_first=True)
        self.out = nn.Linear(self.d_hidden, d_model, bias=False) if cfg.out_proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        return self.out(h)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Any:
        shape = (1, batch_size, self.d_hidden)
        zeros = [torch.zeros(shape, **self.state_kind(device, dtype))
                 for _ in range(self.state_tensors)]
        return tuple(zeros) if self.state_tensors > 1 else zeros[0]

    def step(self, x_t: torch.Tensor, state):
        h, new_state = self.rnn(x_t[:, None], state)
        return self.out(h[:, 0]), new_state

    def flops_per_token(self, seq_len: int) -> float:
        rnn = sum(p.numel() for n, p in self.rnn.named_parameters() if n.startswith("weight"))
        out = self.out.weight.numel() if isinstance(self.out, nn.Linear) else 0
        return 2.0 * (rnn + out) + self.mixing_flops_per_token(seq_len)

    def mixing_flops_per_token(self, seq_len: int) -> float:
        return self.update_flops_per_unit * self.d_hidden
