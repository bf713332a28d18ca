"""The primitive library. One file per primitive; its import below is its registry line."""
from .registry import REGISTRY, Entry, get, list_primitives, register  # noqa: F401

# sequence mixers
from .sequence import attention  # noqa: F401,E402

# channel mixers
from .channel import mlp, swiglu  # noqa: F401,E402
