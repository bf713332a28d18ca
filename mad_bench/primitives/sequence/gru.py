"""Gated recurrent unit (Cho et al., 2014, "Learning Phrase Representations using RNN
Encoder-Decoder"), one layer, via ``torch.nn.GRU`` (PyTorch's formulation):

    r_t = sigmoid(W_r x_t + b_ir + U_r h_{t-1} + b_hr)
    z_t = sigmoid(W_z x_t + b_iz + U_z h_{t-1} + b_hz)
    n_t = tanh(W_n x_t + b_in + r_t . (U_n h_{t-1} + b_hn))
    h_t = (1 - z_t) . n_t + z_t . h_{t-1}
    y_t = h_t W_out                               (identity when ``out_proj`` is False)

Inherently sequential: the parallel form is the fused GRU over the sequence; ``step`` runs the
same module on one token with the state h.
"""
from __future__ import annotations

from torch import nn

from ...configs.primitives.gru import GRUConfig
from ..registry import register
from ._rnn_common import TorchRNN


@register(GRUConfig)
class GRU(TorchRNN):
    """Single-layer GRU with an optional output projection."""

    rnn_class = nn.GRU
    state_tensors = 1
    update_flops_per_unit = 8.0
