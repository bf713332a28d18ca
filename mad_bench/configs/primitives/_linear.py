"""Width rules the linear-attention configs share (deltanet, gated linear attention, RetNet)."""
from __future__ import annotations

import math


def key_value_gcd(d_model: int, expand_k: float, expand_v: float) -> float:
    """The largest width that divides both the key and the value width (what heads must divide);
    a non-integer width is returned as is (``check`` names it)."""
    dk, dv = d_model * expand_k, d_model * expand_v
    if dk != int(dk) or dv != int(dv):
        return dk if dk != int(dk) else dv
    return math.gcd(int(dk), int(dv))


def head_width(d_model: int, expand: float, field: str, n_heads: int) -> int:
    """``d_model * expand``, checked to be an integer that ``n_heads`` divides."""
    dim = d_model * expand
    if dim != int(dim) or int(dim) % n_heads:
        raise ValueError(
            f"{field}={expand} gives width {dim} at d_model={d_model}, "
            f"which must be an integer divisible by n_heads={n_heads}"
        )
    return int(dim)
