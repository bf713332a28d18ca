"""Ctrl-C during work (bench, run, tune, search): the commands turn KeyboardInterrupt into
:class:`Interrupted`, whose message says what landed and how to go on; ``madbench`` prints it
as one line and exits 130 (128 + SIGINT), with no traceback."""
from __future__ import annotations

EXIT_CODE = 130


class Interrupted(Exception):
    """Ctrl-C during work: the one line to print (what landed, how to resume)."""
