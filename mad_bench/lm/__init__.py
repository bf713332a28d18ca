"""Specs as language models on real text: byte-level corpora (data), training on one process or
many (train, distributed), sampling through the recurrent path (generate), the CLI (commands)."""
