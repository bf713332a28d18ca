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

from torch import nn

from ...configs.primitives.lstm import LSTMConfig
from ..registry import register
from ._rnn_common import TorchRNN


@register(LSTMConfig)
class LSTM(TorchRNN):
    """Single-layer LSTM with an optional output projection."""

    rnn_class = nn.LSTM
    state_tensors = 2
    update_flops_per_unit = 10.0
