"""Real text without a network: byte-level corpora from local files.

A corpus is ``stdlib`` (the running interpreter's own standard-library ``.py`` sources: every
machine with Python has tens of MB of real code), a text file, or a folder of files. Tokens are
bytes (vocab 256: no tokenizer to download).

The split is by file and deterministic: a file goes to validation when a hash of its path
relative to the corpus root falls below ``val_fraction`` (the same files on every machine and
every run). ``max_bytes`` caps what is read; files are taken in an order fixed by another hash of
the path, so a cap samples the whole corpus rather than its alphabetically first modules. A
single file (nothing to split by) keeps its last ``val_fraction`` of bytes for validation.

Training batches are random contiguous windows drawn from a generator seeded by (seed, step): a
batch depends on nothing but its step, so a resumed run and every rank of a distributed run
draw the same global batch. Validation is a fixed set of evenly spaced windows.
"""
from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB_SIZE = 256
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git"}
BINARY_PROBE = 8192


def _hash_unit(text: str, salt: str) -> float:
    """A path's place in [0, 1), fixed across machines and Python versions."""
    digest = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class Corpus:
    """The bytes of one corpus, split. ``name`` is what rows and checkpoints record."""

    name: str
    train: torch.Tensor        # uint8 [N_train]
    val: torch.Tensor          # uint8 [N_val]
    n_files: int
    n_val_files: int
    fingerprint: str           # sha256 of the bytes read (both splits), 16 hex digits

    def describe(self) -> str:
        return (f"{self.name}: {self.n_files} file(s) ({self.n_val_files} for validation), "
                f"{len(self.train):,} train / {len(self.val):,} validation bytes")


def corpus_root(corpus: str) -> tuple[str, Path]:
    """(name, path) of a corpus argument: ``stdlib`` or an existing file or folder."""
    if corpus == "stdlib":
        return "stdlib", Path(sysconfig.get_paths()["stdlib"])
    path = Path(corpus).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--corpus {corpus!r}: no such file or folder "
                                "(valid: stdlib, a text file, or a folder of text files)")
    return path.resolve().name or str(path), path


def _is_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"\0" not in fh.read(BINARY_PROBE)


def corpus_files(corpus: str) -> tuple[str, Path, list[str]]:
    """(name, root, relative paths) of the corpus's files, sorted."""
    name, root = corpus_root(corpus)
    if root.is_file():
        return name, root.parent, [root.name]
    pattern = "*.py" if corpus == "stdlib" else "*"
    files = []
    for path in root.rglob(pattern):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if corpus == "stdlib" or _is_text(path):
            files.append(rel.as_posix())
    if not files:
        raise ValueError(f"--corpus {corpus!r}: no text files in {str(root)!r}")
    return name, root, sorted(files)


def load_corpus(corpus: str = "stdlib", max_bytes: int = 64 << 20, val_fraction: float = 0.05) -> Corpus:
    """Read a corpus into memory, split by file (see the module docstring)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction}: must be in (0, 1)")
    if max_bytes < 1:
        raise ValueError(f"--max-bytes {max_bytes}: must be >= 1")
    name, root, files = corpus_files(corpus)
    order = sorted(files, key=lambda rel: _hash_unit(rel, "order"))
    parts: dict[str, list[bytes]] = {"train": [], "val": []}
    split_of = {rel: "val" if _hash_unit(rel, "split") < val_fraction else "train" for rel in files}
    if len(files) > 1 and "val" not in split_of.values():  # a small folder: the lowest hash validates
        split_of[min(files, key=lambda rel: _hash_unit(rel, "split"))] = "val"
    total, used = 0, []
    for rel in order:
        if total >= max_bytes:
            break
        try:
            data = (root / rel).read_bytes()[: max_bytes - total]
        except OSError:
            continue  # unreadable (permissions, a broken link): not part of the corpus
        if not data:
            continue
        parts[split_of[rel]].append(data)
        used.append(rel)
        total += len(data)
    if len(used) == 1 or not parts["train"] or not parts["val"]:
        # one file (or every file read on one side of the split): split by position
        data = b"".join(parts["train"] + parts["val"])
        cut = int(len(data) * (1 - val_fraction))
        train, val = data[:cut], data[cut:]
        n_val = 0
    else:
        train, val = b"\n".join(parts["train"]), b"\n".join(parts["val"])
        n_val = len(parts["val"])
    digest = hashlib.sha256(train)
    digest.update(b"\0split\0")
    digest.update(val)
    return Corpus(name=name, train=_as_tensor(train), val=_as_tensor(val), n_files=len(used),
                  n_val_files=n_val, fingerprint=digest.hexdigest()[:16])


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def check_lengths(corpus: Corpus, seq_len: int) -> None:
    for split, data in (("train", corpus.train), ("validation", corpus.val)):
        if len(data) < seq_len + 1:
            raise ValueError(f"corpus {corpus.name!r}: the {split} split has {len(data)} bytes, fewer "
                             f"than --seq-len {seq_len} + 1 (raise --max-bytes or lower --seq-len)")


def batch_starts(n_bytes: int, seq_len: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Window starts of the global batch of ``step``: a function of (seed, step) alone."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))
    return torch.randint(0, n_bytes - seq_len, (batch_size,), generator=gen)


def windows(data: torch.Tensor, starts: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) int64 [B, seq_len] of the windows starting at ``starts``."""
    idx = starts[:, None] + torch.arange(seq_len + 1)[None]
    chunk = data[idx].long()
    return chunk[:, :-1], chunk[:, 1:]


def train_batch(corpus: Corpus, seq_len: int, batch_size: int, seed: int, step: int,
                rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of the global batch of ``step`` (rank r takes rows r*B/W .. (r+1)*B/W)."""
    starts = batch_starts(len(corpus.train), seq_len, batch_size, seed, step)
    per = batch_size // world
    return windows(corpus.train, starts[rank * per:(rank + 1) * per], seq_len)


def val_starts(corpus: Corpus, seq_len: int, n_windows: int) -> torch.Tensor:
    """The fixed validation windows: up to ``n_windows`` evenly spaced over the split."""
    last = len(corpus.val) - seq_len - 1
    n = max(1, min(n_windows, last // seq_len + 1))
    return torch.linspace(0, last, n).round().long().unique()
