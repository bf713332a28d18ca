"""Parameters of the ``lstm`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.lstm`."""
from __future__ import annotations

from typing import Literal

from ._rnn import TorchRNNConfig


class LSTMConfig(TorchRNNConfig):
    type: Literal["lstm"] = "lstm"
