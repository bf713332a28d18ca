"""In-context recall, noisy in-context recall and fuzzy in-context recall (MAD-Lab semantics).

Source read: MAD-Lab ``mad/data/instances.py`` (``generate_in_context_recall_instance``,
``generate_fuzzy_in_context_recall_instance``) and ``mad/configs.py`` (``multi_query=True``
for every MAD recall setting).  Re-implemented vectorised in torch; no code copied.

In-context / noisy recall token layout (multi-query, no special tokens)
-----------------------------------------------------------------------
``nsv = vocab_size - noise_vocab_size``; keys ``[0, nsv//2)``, values ``[nsv//2, nsv)``,
noise ``[nsv, vocab_size)``.  A raw sequence is ``seq_len // 2`` slots of two tokens:
slots ``0 .. P-2`` are key/value pairs (or, with probability ``frac_noise``, two noise
tokens); the last slot is the final query: a key drawn uniformly from the *distinct* keys
presented earlier, followed by its value.  Keys are drawn with replacement; a key's value is
drawn uniformly from the value vocab the first time the key appears and reused afterwards
(not a bijection: two keys may share a value).  Inputs are ``raw[:-1]`` (``seq_len - 1``
tokens); training targets ``raw[1:]`` (all positions incl. noise); eval targets score the
value of every pair whose key occurred in an earlier (non-noise) pair, plus the final query.
After the shift, a value is scored at the position of its key.

MAD-Lab draws a "never noise" slot in ``range(P)`` which may be the final slot (then all
body slots can be noise and its ``rng.choice`` over presented keys fails); we draw it in
``range(P-1)`` so at least one body pair always exists.

Fuzzy recall token layout (multi-query)
---------------------------------------
``pad = vocab_size - 1``; keys are motifs of ``1..k_motif_size`` *distinct* tokens from
``[0, (V-1)//2)``, values motifs of ``1..v_motif_size`` distinct tokens from
``[(V-1)//2, V-1)`` (MAD-Lab uses ``itertools.permutations``, so no repeated token inside a
motif).  Training: key size uniform in ``1..k``; test: key size always ``k`` (MAD-Lab: "we
always prompt at the maximum key motif size").  Value size uniform in ``1..v`` at a key's
first sight; repeats reuse the stored value motif.  Pairs are appended while the current
length is ``< seq_len - |final pair| - (k + v)`` (MAD-Lab's loop bound), then the final query
pair (a key presented earlier, with its value) and left padding to ``seq_len + 1`` tokens;
inputs ``raw[:-1]`` (``seq_len`` tokens), targets ``raw[1:]`` (train: all, pad included) or
scored-only (values of repeated keys + final query).

The final query's key size follows MAD-Lab's distribution: uniform over ``1..k`` in training
(MAD-Lab draws its probe's size first, then a motif of that size), so every key length is
equally likely as the final query; a key drawn uniformly among the keys present would favour
long keys (many of them, each rarely repeated).  The size is drawn uniformly among the sizes
present in the body (all of ``1..k`` unless a sequence is very short), then the key uniformly
among the distinct keys of that size whose first occurrence starts early enough to be in the
body for any final pair size.  MAD-Lab plants its probe pair at a random index beforehand and
can (rarely) fail to plant it, scoring an unseen probe; here the final query always repeats a
key seen in the body.  Noise is not supported for fuzzy recall (MAD does not use it).
"""
from __future__ import annotations

import functools
import math

import torch

from ..configs.tasks import FuzzyInContextRecallSetting, InContextRecallSetting, Split
from .base import IGNORE_INDEX, TaskData, sample_distinct


# ---------------------------------------------------------------------------------------
# in-context recall (+ noisy)
# ---------------------------------------------------------------------------------------
def _first_occurrence(ids: torch.Tensor, n_ids: int) -> torch.Tensor:
    """``first[b, i]`` = smallest j with ``ids[b, j] == ids[b, i]`` (ids in ``[0, n_ids)``)."""
    B, P = ids.shape
    pos = torch.arange(P).expand(B, P)
    first = torch.full((B, n_ids), P, dtype=torch.long).scatter_reduce(
        1, ids, pos, reduce="amin", include_self=True)
    return first.gather(1, ids)


def generate_recall(n: int, seq_len: int, vocab_size: int, noise_vocab_size: int,
                    frac_noise: float, g: torch.Generator):
    nsv = vocab_size - noise_vocab_size
    nk = nsv // 2
    P = seq_len // 2
    Pb = P - 1  # body slots
    keys = torch.randint(nk, (n, Pb), generator=g)
    table = torch.randint(nk, nsv, (n, nk), generator=g)  # value of each key, drawn on first sight
    if frac_noise > 0:
        is_noise = torch.rand(n, Pb, generator=g) < frac_noise
        keep = torch.randint(Pb, (n,), generator=g)
        is_noise[torch.arange(n), keep] = False
        noise = torch.randint(nsv, vocab_size, (n, Pb, 2), generator=g)
    else:
        is_noise = torch.zeros(n, Pb, dtype=torch.bool)
        noise = torch.zeros(n, Pb, 2, dtype=torch.long)
    kk = torch.where(is_noise, nk, keys)  # noise slots -> bucket nk
    first = _first_occurrence(kk, nk + 1)
    pos = torch.arange(Pb).expand(n, Pb)
    repeated = (first < pos) & ~is_noise
    presented = torch.zeros(n, nk + 1, dtype=torch.float32).scatter_(
        1, kk, 1.0)[:, :nk]
    probe = torch.multinomial(presented, 1, generator=g).squeeze(1)
    all_keys = torch.cat([keys, probe[:, None]], dim=1)
    vals = table.gather(1, all_keys)
    noise_all = torch.cat([noise, torch.zeros(n, 1, 2, dtype=torch.long)], dim=1)
    nz = torch.cat([is_noise, torch.zeros(n, 1, dtype=torch.bool)], dim=1)
    raw = torch.empty(n, 2 * P, dtype=torch.long)
    raw[:, 0::2] = torch.where(nz, noise_all[..., 0], all_keys)
    raw[:, 1::2] = torch.where(nz, noise_all[..., 1], vals)
    scored = torch.zeros(n, 2 * P, dtype=torch.bool)
    scored[:, 1:-1:2] = repeated
    scored[:, -1] = True
    ev = torch.where(scored, raw, IGNORE_INDEX)
    return raw[:, :-1].contiguous(), raw[:, 1:].contiguous(), ev[:, 1:].contiguous()


def recall_examples(setting: InContextRecallSetting, n: int, split: Split, g: torch.Generator,
                    seed: int) -> TaskData:
    """In-context recall, noisy or not (``NoisyInContextRecallSetting`` is a subclass)."""
    inp, tr, ev = generate_recall(n, setting.seq_len, setting.vocab_size, setting._noise_vocab(),
                                  setting._frac_noise(), g)
    return TaskData(inp, tr if split == "train" else ev, ev)


# ---------------------------------------------------------------------------------------
# fuzzy in-context recall
# ---------------------------------------------------------------------------------------
def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    return x.cumsum(1) - x


@functools.lru_cache(maxsize=16)
def _motif_table(n: int, kmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All motifs of 1..kmax distinct tokens from range(n), as rows padded with -1, grouped
    by size (``offsets[s-1]`` = first row of size s), or None when too many."""
    total = sum(math.perm(n, s) for s in range(1, kmax + 1))
    if total > _MAX_TABLE:
        return None
    parts, offsets, off = [], [], 0
    for s in range(1, kmax + 1):
        grids = torch.cartesian_prod(*[torch.arange(n)] * s).view(-1, s)
        if s > 1:
            srt = grids.sort(1).values
            grids = grids[(srt.diff(dim=1) != 0).all(1)]
        parts.append(torch.cat([grids, torch.full((grids.shape[0], kmax - s), -1)], 1))
        offsets.append(off)
        off += grids.shape[0]
    return torch.cat(parts), torch.tensor(offsets)


_MAX_TABLE = 1 << 21


def _draw_motifs(shape, sizes: torch.Tensor, n: int, kmax: int, g: torch.Generator):
    """Motif ids and tokens ([..., kmax], -1 padded) for given sizes, uniform within a size."""
    tab = _motif_table(n, kmax)
    if tab is not None:
        table, offsets = tab
        counts = torch.tensor([math.perm(n, s) for s in range(1, kmax + 1)], dtype=torch.float64)
        u = torch.rand(shape, generator=g, dtype=torch.float64)
        r = (u * counts[sizes - 1]).long()
        ids = offsets[sizes - 1] + r
        return ids, table[ids]
    tok = sample_distinct(int(sizes.numel()), kmax, n, g).view(*shape, kmax)
    valid = torch.arange(kmax) < sizes[..., None]
    tok = torch.where(valid, tok, -1)
    base = torch.tensor([(n + 1) ** t for t in range(kmax)], dtype=torch.long)
    ids = ((tok + 1) * base).sum(-1)  # digits token+1 in base n+1, 0 for absent positions
    return ids, tok


def _first_index(ids: torch.Tensor, n_ids: int | None) -> torch.Tensor:
    """first[b, j] = smallest i with ids[b, i] == ids[b, j]."""
    B, M = ids.shape
    if n_ids is not None and n_ids <= 8 * M:
        return _first_occurrence(ids, n_ids)
    sid, order = torch.sort(ids, dim=1, stable=True)
    start = torch.ones_like(sid, dtype=torch.bool)
    start[:, 1:] = sid[:, 1:] != sid[:, :-1]
    grp = torch.where(start, torch.arange(M).expand(B, M), 0).cummax(1).values
    first_sorted = order.gather(1, grp)
    return torch.empty_like(first_sorted).scatter_(1, order, first_sorted)


def _fuzzy_candidates(n: int, M: int, nk: int, nv: int, kmax: int, vmax: int,
                      split: Split, g: torch.Generator):
    """M candidate pairs per row: key/value sizes and motifs, repeats resolved."""
    if split == "train":
        ksize = torch.randint(1, kmax + 1, (n, M), generator=g)
    else:
        ksize = torch.full((n, M), kmax, dtype=torch.long)
    vsize = torch.randint(1, vmax + 1, (n, M), generator=g)
    key_id, ktok = _draw_motifs((n, M), ksize, nk, kmax, g)
    _, vtok = _draw_motifs((n, M), vsize, nv, vmax, g)
    vtok = vtok + nk
    tab = _motif_table(nk, kmax)
    first = _first_index(key_id, None if tab is None else tab[0].shape[0])
    is_first = first == torch.arange(M)
    # repeated keys reuse the stored value motif (and its size)
    vsize = vsize.gather(1, first)
    vtok = vtok.gather(1, first[..., None].expand(n, M, vmax))
    kvalid = ktok >= 0
    return ksize, vsize, ktok, vtok, kvalid, is_first


def generate_fuzzy(n: int, seq_len: int, vocab_size: int, kmax: int, vmax: int,
                   split: Split, g: torch.Generator):
    pad = vocab_size - 1
    nk = (vocab_size - 1) // 2
    nv = vocab_size - 1 - nk
    T = seq_len + 1  # raw length before the autoregressive shift
    ar_k = torch.arange(kmax)
    ar_v = torch.arange(vmax)
    # Candidate pairs: enough to exceed seq_len tokens in every row.  Try a budget from the
    # mean pair length first; if some row falls short, redraw with the worst-case bound
    # (deterministic: both draws come from the same generator stream).
    min_len = (1 if split == "train" else kmax) + 1
    mean_len = ((kmax + 1) / 2 if split == "train" else kmax) + (vmax + 1) / 2
    M_max = seq_len // min_len + 1
    M = min(M_max, int(seq_len / mean_len * 1.25) + 16)
    while True:
        ksize, vsize, ktok, vtok, kvalid, is_first = _fuzzy_candidates(n, M, nk, nv, kmax, vmax, split, g)
        if M == M_max or bool(((ksize + vsize).sum(1) >= seq_len).all()):
            break
        M = M_max
    length = ksize + vsize
    pstart = _exclusive_cumsum(length)
    # final query: a distinct key whose pair is in the body for any final pair size; its size
    # first, uniform over the sizes present (MAD-Lab: uniform over 1..k), then a key of that size
    cand = is_first & (pstart < seq_len - 2 * (kmax + vmax))
    has_size = torch.stack([(cand & (ksize == s)).any(1) for s in range(1, kmax + 1)], 1)
    qsize = torch.multinomial(has_size.float(), 1, generator=g) + 1  # [n, 1]
    pj = torch.multinomial((cand & (ksize == qsize)).float(), 1, generator=g)  # [n, 1]
    kps = length.gather(1, pj).squeeze(1)
    include = pstart < (seq_len - kps - (kmax + vmax))[:, None]
    body_len = (length * include).sum(1)
    padn = T - body_len - kps  # >= 2
    repeated = include & ~is_first
    # scatter body tokens
    raw = torch.full((n, T + 1), pad, dtype=torch.long)  # column T is a dump slot
    ev = torch.full((n, T + 1), IGNORE_INDEX, dtype=torch.long)
    off = (padn[:, None] + pstart)[..., None]  # [n, M, 1]
    kpos = torch.where(kvalid & include[..., None], off + ar_k, T)
    vvalid = ar_v < vsize[..., None]
    vpos = torch.where(vvalid & include[..., None], off + ksize[..., None] + ar_v, T)
    raw.scatter_(1, kpos.view(n, -1), ktok.view(n, -1))
    raw.scatter_(1, vpos.view(n, -1), vtok.view(n, -1))
    vpos_ev = torch.where(repeated[..., None], vpos, T)
    ev.scatter_(1, vpos_ev.view(n, -1), vtok.view(n, -1))
    # final query pair
    pk = ktok.gather(1, pj[..., None].expand(n, 1, kmax)).squeeze(1)
    pv = vtok.gather(1, pj[..., None].expand(n, 1, vmax)).squeeze(1)
    pks = ksize.gather(1, pj)
    pvs = vsize.gather(1, pj)
    qoff = (padn + body_len)[:, None]
    qk = torch.where(ar_k < pks, qoff + ar_k, T)
    qv = torch.where(ar_v < pvs, qoff + pks + ar_v, T)
    raw.scatter_(1, qk, pk)
    raw.scatter_(1, qv, pv)
    ev.scatter_(1, qv, pv)
    raw, ev = raw[:, :T], ev[:, :T]
    return raw[:, :-1].contiguous(), raw[:, 1:].contiguous(), ev[:, 1:].contiguous()


def fuzzy_examples(setting: FuzzyInContextRecallSetting, n: int, split: Split, g: torch.Generator,
                   seed: int) -> TaskData:
    inp, tr, ev = generate_fuzzy(n, setting.seq_len, setting.vocab_size, setting.k_motif_size,
                                 setting.v_motif_size, split, g)
    return TaskData(inp, tr if split == "train" else ev, ev)
