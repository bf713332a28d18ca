"""Parameters of the ``gru`` primitive (no torch); its module:
:mod:`mad_bench.primitives.sequence.gru`."""
from __future__ import annotations

from typing import Literal

from ._rnn import TorchRNNConfig


class GRUConfig(TorchRNNConfig):
    type: Literal["gru"] = "gru"
