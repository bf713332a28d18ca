"""Kernels under ``torch.func.vmap``: the ensemble engine vmaps the whole model over its
members. Every Triton kernel is a ``torch.library`` custom op (fake shapes, autograd, a batching
rule), one opaque node to torch.compile also inside vmap: an ``autograd.Function`` there made
dynamo give up on the whole vmapped forward, so inductor fused nothing around the kernels.

:func:`register_fold` gives an op its batching rule, by argument position in its schema. Under
vmap the rule sees the members' stacked tensors and either

* **folds** the member dimension into the op's batch dimension (one launch for all members):
  right when every vmapped argument is one of ``fold_args``, tensors whose dim 0 is the
  batch (activations such as q, k, v, gates; an unvmapped one of them is expanded), or one of
  ``member_args``, per-member parameters that the kernel takes with a leading member dim
  (``[G, ...]``, member ``g`` serving batch rows ``g * b / G ...``; an unvmapped one is passed
  as it is, shared by all members); or
* **loops** over the members (one launch each) when a vmapped argument is in neither list (a
  per-member parameter that the kernel only takes shared), which cannot be folded.

A kernel that takes per-member parameters finds G with :func:`member_count` and returns their
gradients per member with :func:`member_sum` (the selective scan, the short conv, RWKV-6's
bonus, sLSTM's recurrent weights).

What the rule runs happens below the vmap level, on plain tensors, so autograd records the
op's own autograd formula and its Triton backward as in a plain run.
"""
from __future__ import annotations

from typing import Sequence

import torch


def is_vmapped(t) -> bool:
    """True for a tensor inside ``vmap`` (its ``requires_grad`` reads False there even when the
    members' tensors require grad)."""
    return isinstance(t, torch.Tensor) and torch._C._functorch.is_batchedtensor(t)


def member_count(batch: int, *params) -> int:
    """The member count G of a kernel's per-member parameters (1 when all are shared).

    ``params`` are ``(name, tensor or None, shared_ndim)``: a tensor of ``shared_ndim`` dims is
    shared by every batch row, one of ``shared_ndim + 1`` dims is per member (``[G, ...]``, batch
    row ``r`` served by member ``r // (batch / G)``). Every per-member parameter must have the
    same G, and G must divide the batch."""
    counts = {}
    for name, p, nd in params:
        if p is None:
            continue
        if p.dim() not in (nd, nd + 1):
            raise ValueError(f"{name} must have {nd} dims (shared) or {nd + 1} (per member, leading "
                             f"member dim); got shape {tuple(p.shape)}")
        if p.dim() == nd + 1:
            counts[name] = p.shape[0]
    G = set(counts.values())
    if len(G) > 1 or (G and batch % next(iter(G))):
        raise ValueError(f"per-member parameters must share one member count dividing the batch {batch}; "
                         f"got leading dims {counts}")
    return next(iter(G)) if G else 1


def member_sum(part: torch.Tensor, per_member: bool, G: int, dim: int = 0) -> torch.Tensor:
    """A parameter's gradient from per-row partials (rows member-major along ``dim``): the sum over
    all rows for a shared parameter, ``[G, ...]`` sums over each member's own rows otherwise."""
    if not per_member:
        return part.sum(dim)
    return part.unflatten(dim, (G, -1)).sum(dim + 1)


def _fold(args, in_dims, fold_args, member_args, G):
    out = []
    for i, (a, d) in enumerate(zip(args, in_dims)):
        if isinstance(a, torch.Tensor) and i in member_args:
            out.append(a.movedim(d, 0) if d is not None else a)
            continue
        if not isinstance(a, torch.Tensor) or i not in fold_args:
            out.append(a)
            continue
        a = a.movedim(d, 0) if d is not None else a.unsqueeze(0).expand(G, *a.shape)
        out.append(a.reshape(G * a.shape[1], *a.shape[2:]))
    return out


def _unfold(out, G):
    if isinstance(out, (tuple, list)):
        return tuple(_unfold(o, G) for o in out)
    if out is None:
        return None
    return out.reshape(G, out.shape[0] // G, *out.shape[1:])


def _dims(out):
    if isinstance(out, (tuple, list)):
        return tuple(_dims(o) for o in out)
    return None if out is None else 0


def _batched(fn, G, dims, args, fold_args, member_args):
    """``fn`` over G members' stacked ``args`` (vmapped along ``dims``): folded into one call
    when every vmapped argument folds, else one call per member. Returns (out, out_dims)."""
    vmapped = [i for i, d in enumerate(dims) if d is not None and isinstance(args[i], torch.Tensor)]
    if all(i in fold_args or i in member_args for i in vmapped):
        out = _unfold(fn(*_fold(args, dims, fold_args, member_args, G)), G)
        return out, _dims(out)
    outs = [fn(*[a.select(d, g) if d is not None and isinstance(a, torch.Tensor) else a
                 for a, d in zip(args, dims)]) for g in range(G)]
    if isinstance(outs[0], (tuple, list)):
        out = tuple(None if o[0] is None else torch.stack(o) for o in zip(*outs))
    else:
        out = torch.stack(outs)
    return out, _dims(out)


def register_fold(op, fold_args: Sequence[int] = (), member_args: Sequence[int] = ()):
    """Give the ``torch.library`` custom op ``op`` the module's batching rule (fold the members
    into the batch, or loop), by argument position in its schema. Returns ``op``."""
    fold_args, member_args = tuple(fold_args), tuple(member_args)

    def rule(info, in_dims, *args):
        return _batched(op, info.batch_size, in_dims, args, fold_args, member_args)

    op.register_vmap(rule)
    return op
