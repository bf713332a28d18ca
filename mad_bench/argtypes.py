"""argparse value types shared by the command modules (``cli`` and the ``lm`` commands): a bad
value is reported by argparse as ``argument --flag: <message>``, never as a traceback."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
