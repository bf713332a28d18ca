"""The primitive modules. One file per primitive; its import below is its registry line (its
config, in ``mad_bench/configs/primitives``, has its own in ``mad_bench/configs/registry.py``)."""
from .registry import REGISTRY, Entry, check_complete, get, register  # noqa: F401

# sequence mixers
from .sequence import attention  # noqa: F401,E402
from .sequence import mamba, mamba2, mlstm, slstm  # noqa: F401,E402
from .sequence import gru, hyena, lstm, rwkv6, short_conv  # noqa: F401,E402
from .sequence import deltanet, gla, linear_attention, retnet  # noqa: F401,E402
from .sequence import base_conv, based, gated_deltanet, h3, sliding_window_attention  # noqa: F401,E402

# channel mixers
from .channel import mlp, moe, swiglu  # noqa: F401,E402

check_complete()
