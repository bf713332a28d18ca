"""Train the lr x weight-decay grid of one (spec, setting) as one batched ensemble.

The plain trainer (:mod:`mad_bench.train.trainer`) trains the G grid points of a setting one
after another; every one of them builds the same model from the same seed, reads the same
data in the same shuffled order, and differs only in lr and weight decay. The engine trains
them together and computes the same function:

* **one model, G parameter sets.** The parameters of all members live in one flat
  ``[G, N]`` fp32 buffer (Adam's two moments likewise); each parameter of the model is a
  ``[G, *shape]`` leaf view into it. The model runs as
  ``vmap(functional_call(model, params, x), in_dims=(0, None), randomness="same")``: the
  members share the batch, each uses its own parameters. One backward of the summed
  per-member losses gives every member its exact own gradient (members are independent).
* **AdamW by hand on the flat buffers**, with torch.optim.AdamW's update formula
  (decoupled weight decay ``p *= 1 - lr wd``, ``m.lerp_(g, 1 - b1)``,
  ``v = b2 v + (1 - b2) g^2``, ``p += -(lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)``) and
  per-member coefficients; gradient clipping with a per-member norm (``clip_grad_norm_``'s
  ``max_norm / (norm + 1e-6)`` clamped to 1). The per-step coefficients of the whole run
  (cosine schedule x bias corrections, computed on the host in float64 exactly as torch
  does) sit in a device table indexed by a device step counter: no host value enters a step.
* **data on the device once**; the epoch's permutation (``torch.randperm`` on the CPU
  generator seeded ``seed + 1``, as in the trainer) is copied once per epoch into a static
  device buffer and each step gathers its batch through a device batch counter.
* **metrics on the device**: per-member loss sums, finiteness flags and accuracy counts are
  accumulated in static buffers; the host reads them once per epoch (one sync).
* **whole-step CUDA graphs** (:mod:`.graphs`): forward, backward, clipping, AdamW and metric
  accumulation of a training step, and the forward + metrics of an evaluation batch, are each
  captured once and replayed; capture failures fall back to eager execution (logged).
* **stopping per member**: the host applies the trainer's rules per member after every
  epoch (diverged, eval_select best/last, stop-at-accuracy, early stop, pruning callback). A
  stopped member is frozen (its step size is masked to 0, weight decay to 1) and dropped from
  the ensemble at the epoch boundary (the buffers shrink and the graphs are re-captured) when
  that pays: a compiled step compiles again for every new member count, so ``compact="auto"``
  weighs the measured rebuild against the step time the dropped members would still cost
  (:func:`compaction_pays`). When every member has stopped the ensemble stops.

Fallback: some primitives have no vmap batching rule (``torch.nn.LSTM`` / ``GRU``), or batch
incorrectly. Before training, a vmapped forward + backward on a 2-example batch is tried and
compared with a per-member forward; if it fails the engine runs the members' forwards in a
Python loop inside the same step (``mode="loop"``): same flat optimizer, metrics and graph
capture, G forward passes per step instead of one.

Numerics: members follow the plain trainer's trajectory up to fp32 rounding (batched matmuls
and a single flat gradient norm sum in a different order); see tests/test_engine.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..configs.architecture import ArchitectureSpec
from ..configs.train import TrainConfig
from ..tasks import extra_columns, generate
from ..tasks.base import IGNORE_INDEX
from ..tasks.metrics import AccuracyCounts
from .core import (RunResult, RunRules, autocast, cosine_lr, decays, fp32_matmul, prepare_run,
                   resolve_device, uses_bf16)
from .graphs import Program
from .member_metrics import batched_counts, batched_macro

log = logging.getLogger("mad_bench.engine")

ADAM_EPS = 1e-8  # torch.optim.AdamW's default, which the trainer uses
PROBE_EXAMPLES = 16
_PROBED: dict[tuple, tuple[str, str | None]] = {}  # probe key -> (mode, fallback reason)


@dataclass
class EngineOptions:
    mode: str = "auto"
    """``auto``: vmap when the probe passes, else loop (one member: ``single``, the plain
    trainer's case, no vmap and no probe); ``vmap`` / ``loop`` force one."""
    capture: bool | None = None
    """Capture steps in CUDA graphs (None: on CUDA). Ignored on CPU."""
    capture_eval: bool = True
    """Also capture the evaluation forward."""
    compact: bool | str = "auto"
    """Drop stopped members from the ensemble at epoch boundaries (re-captures the graphs and,
    with ``compile``, compiles the step again for the new member count). ``auto``: always where
    the step is neither compiled nor captured (rebuilding costs nothing); else only when
    :func:`compaction_pays` (the measured rebuild time against the step time it saves)."""
    capture_warmup: int = 3
    compile: str | None = "auto"
    """torch.compile the step's two halves (forward + loss, clipping + AdamW + metrics) with
    this backend: ``auto`` is ``inductor`` on CUDA and off elsewhere; None / ``off``: eager.
    A step that fails to compile runs eagerly (logged in :class:`EngineInfo`)."""
    max_members: int | None = None
    """Split a larger grid into ensembles of at most this many members (memory)."""
    probe: bool = True
    """Compare a vmapped forward with a per-member forward before training."""
    emulate_capture: bool = False
    """Tests: run the capture's warm-up + state restore where no CUDA graph can be made."""
    sdpa: str = "auto"
    """Attention backends allowed on CUDA: ``auto`` (flash + math, the vmap-safe pair), or
    ``math`` alone (matmul + softmax, which inductor fuses: faster for MAD's 8-wide heads,
    which flash pads to 32)."""

    def __post_init__(self):
        if self.compact not in (True, False, "auto"):
            raise ValueError(f"compact must be true, false or 'auto', got {self.compact!r}")


@dataclass
class EngineInfo:
    """What the engine did for one grid (filled by :func:`train_grid` when passed in)."""
    mode: str = ""
    members: int = 0
    captured_train: bool = False
    captured_eval: bool = False
    compiled: bool = False
    compile_failure: str | None = None
    graph_breaks: list[str] = field(default_factory=list)  # dynamo's reasons: parts run unfused
    capture_failure: str | None = None
    fallback_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    steps: int = 0            # ensemble steps run (each trains every active member)
    member_steps: int = 0     # sum over steps of active members
    recaptures: int = 0
    compactions_skipped: int = 0  # stopped members kept (frozen) because rebuilding cost more
    setup_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class ModeCheck:
    """vmap vs per-member loop on one batch (:meth:`Ensemble.compare_modes`)."""
    FP32_TOL = 1e-3
    BF16_TOL = 0.25  # bf16 rounds differently in batched and single matmuls; NaN or a wrong
    #                  batching rule shows as >= 1 (a gradient of the wrong size or sign)
    loss_err: float
    grad_err: float
    worst_param: str
    tol: float

    @property
    def ok(self) -> bool:
        return self.loss_err <= self.tol and self.grad_err <= self.tol

    def describe(self) -> str:
        return (f"vmapped forward/backward differs from the per-member loop: loss rel err "
                f"{self.loss_err:.3g}, gradient rel err {self.grad_err:.3g} at {self.worst_param} "
                f"(tolerance {self.tol:g})")


def _schedule_table(cfgs: Sequence[TrainConfig], total_steps: int) -> torch.Tensor:
    """``[total_steps, 3, G]`` float64: AdamW's per-step scalars of each member, computed as
    ``torch.optim.AdamW`` computes them (Python floats): ``1 - lr wd``, ``-(lr / bc1)``,
    ``sqrt(bc2)`` with the trainer's cosine lr of that step."""
    rows = []
    for s in range(total_steps):
        t = float(s + 1)  # AdamW's step count after its increment
        cols = []
        for cfg in cfgs:
            beta1, beta2 = cfg.betas
            lr = cosine_lr(s, total_steps, cfg)
            bc1 = 1 - beta1 ** t
            bc2 = 1 - beta2 ** t
            cols.append((1 - lr * cfg.weight_decay, -(lr / bc1), bc2 ** 0.5))
        rows.append(list(zip(*cols)))
    return torch.tensor(rows, dtype=torch.float64)


def _vmap_safe_attention(device: torch.device, choice: str = "auto"):
    """SDPA backends that are right under vmap. Measured on an H200 (torch 2.11, bf16,
    ``benchmarks/engine_check.py``): the cuDNN backend, which SDPA picks by default there, gives
    infinite gradients under vmap and the memory-efficient one raises ("LSE is not correctly
    aligned"); flash and math agree with the per-member loop."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    if choice == "math":
        return sdpa_kernel([SDPBackend.MATH])
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])


class _MemberModel(torch.nn.Module):
    """One member as a plain module (``model(x)``): the shared model on that member's parameters."""

    def __init__(self, model: torch.nn.Module, params: dict):
        super().__init__()
        self.model, self.member_params = model, params

    def forward(self, x):
        return functional_call(self.model, self.member_params, (x,))


@contextlib.contextmanager
def _graph_breaks():
    """Collects the reasons of the graph breaks dynamo takes inside the block (its global
    counters, before and after): the step then compiles in pieces and runs the rest eagerly,
    which torch.compile otherwise survives silently."""
    from torch._dynamo.utils import counters
    before = dict(counters["graph_break"])
    reasons: list[str] = []
    try:
        yield reasons
    finally:
        reasons.extend(str(r).splitlines()[0][:300] for r, n in counters["graph_break"].items()
                       if n > before.get(r, 0))


def _raise_recompile_limits() -> None:
    """Dynamo keeps a few compiled versions per function; a bench compiles the step once per
    (spec, setting, ensemble size), so the defaults (8) would silently send later settings to
    eager execution."""
    import torch._dynamo.config as dyn
    for name, floor in (("recompile_limit", 512), ("cache_size_limit", 512),
                        ("accumulated_recompile_limit", 8192), ("accumulated_cache_size_limit", 8192)):
        if hasattr(dyn, name):
            setattr(dyn, name, max(getattr(dyn, name), floor))


@dataclass
class _Member:
    index: int                # position in the caller's grid
    rules: RunRules           # the trainer's per-epoch rules, this member's state
    wall_s: float = 0.0
    done: bool = False

    @property
    def result(self) -> RunResult:
        return self.rules.result


class Ensemble:
    """G members of one (model, data) trained in lockstep; see the module docstring."""

    def __init__(self, model: torch.nn.Module, cfgs: Sequence[TrainConfig], x_train, y_train,
                 x_test, y_test, vocab: int, device: torch.device, options: EngineOptions,
                 info: EngineInfo | None = None, on_eval: Sequence | None = None,
                 columns: Callable[[torch.nn.Module], dict] | None = None):
        base = cfgs[0]
        self.columns = columns  # task hook: extra test columns of a member's final model
        spec = getattr(model, "spec", None)
        self.spec_key = (type(model).__name__, spec.spec_hash() if hasattr(spec, "spec_hash") else id(model))
        for c in cfgs[1:]:
            same = c.model_copy(update={"lr": base.lr, "weight_decay": base.weight_decay})
            if same != base:
                raise ValueError("ensemble members may differ only in lr and weight_decay")
        self.model, self.base_cfg, self.dev, self.opts = model, base, device, options
        self.vocab = vocab
        self.info = info or EngineInfo()
        n_params = sum(p.numel() for p in model.parameters())
        on_eval = list(on_eval) if on_eval is not None else [None] * len(cfgs)
        self.members = [_Member(i, RunRules(c, RunResult(status="ok", stop_reason="completed",
                                                         params=n_params), on_eval[i]))
                        for i, c in enumerate(cfgs)]
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.n, self.bs = x_train.shape[0], base.batch_size
        self.steps_per_epoch = math.ceil(self.n / self.bs)
        self.total_steps = self.steps_per_epoch * base.epochs
        self.n_full = self.n // self.bs
        self.n_test = x_test.shape[0]
        self.n_test_full = self.n_test // self.bs
        self.autocast = lambda: autocast(device, base, cache=False)  # capture needs no cache
        self.capture = (options.capture if options.capture is not None else True) and device.type == "cuda"

        # parameters: one flat [G, N] buffer; unused parameters (no gradient) are not updated,
        # as torch.optim skips parameters whose .grad is None
        named = list(model.named_parameters())
        dtypes = {p.dtype for _, p in named}
        if dtypes != {torch.float32}:
            raise ValueError(f"the engine expects fp32 parameters, got {dtypes}")
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        flat0 = torch.cat([p.detach().reshape(-1) for _, p in named]).to(device)
        G = len(cfgs)
        self.slots = list(range(G))  # slot -> member index
        self.flat = flat0.unsqueeze(0).repeat(G, 1).contiguous()
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        # one spare row: a capture's warm-up step (state restored after) may run at the end
        sched = _schedule_table(cfgs, self.total_steps)
        self.sched = torch.cat([sched, sched[-1:]]).to(device)
        self.active = torch.ones(G, dtype=torch.bool, device=device)
        # [1, N] 0/1 per element: weight decay applies (weight_decay_scope, used parameters)
        self.decay_flags = decays(model, base)
        self.decay_mask: torch.Tensor | None = self._mask(self.decay_flags)
        self.has_aux = False
        self.mode = "vmap"
        # dropout > 0: vmap(randomness="same") draws one mask per call, as each plain run does;
        # loop mode replays the RNG state for each member (host-side: not capturable)
        self.dropout = float(getattr(getattr(model, "spec", None), "dropout", 0.0) or 0.0)
        self.replay_rng = False
        # counters and static buffers
        self.step_ctr = torch.zeros(1, dtype=torch.long, device=device)
        self.batch_ctr = torch.zeros(1, dtype=torch.long, device=device)
        self.eval_ctr = torch.zeros(1, dtype=torch.long, device=device)
        self.order = torch.zeros(self.n, dtype=torch.long, device=device)
        self._rebuild_views()
        self._alloc_metrics()
        self.train_prog: Program | None = None
        self.eval_prog: Program | None = None
        backend = options.compile
        if backend == "auto":
            backend = "inductor" if device.type == "cuda" else None
        self.compiled = None
        if backend not in (None, "off"):
            _raise_recompile_limits()
            self.compiled = (torch.compile(self._forward_loss, backend=backend, dynamic=False),
                             torch.compile(self._apply_update, backend=backend, dynamic=False))
            self.info.compiled = True
        self._breaks_counted = False

    # ------------------------------------------------------------------ state layout
    def _mask(self, flags: Sequence[bool]) -> torch.Tensor | None:
        """Per-parameter flags as a ``[1, N]`` float mask over the flat buffer (None: all set)."""
        if all(flags):
            return None
        return torch.cat([torch.full((n,), float(f)) for f, n in zip(flags, self.numels)]).to(self.dev)[None]

    @property
    def G(self) -> int:
        return self.flat.shape[0]

    def _rebuild_views(self) -> None:
        G = self.G
        self.leaves: list[torch.Tensor] = []
        off = 0
        for shape, n in zip(self.shapes, self.numels):
            v = self.flat[:, off:off + n].view(G, *shape)
            v.requires_grad_(True)
            self.leaves.append(v)
            off += n
        self.params = dict(zip(self.names, self.leaves))
        biases = (f"{name}.bias" if name else "bias" for name, m in self.model.named_modules()
                  if isinstance(m, torch.nn.Linear) and m.bias is not None)
        self._linear_biases = [n for n in biases if n in self.params]  # cast under vmap: _vmap_bias_dtype
        self.offsets = (torch.arange(G, device=self.dev) * (self.vocab + 1))[:, None]

    def _alloc_metrics(self) -> None:
        G, C, dev = self.G, self.vocab, self.dev
        self.tr_loss = torch.zeros(G, dtype=torch.float64, device=dev)
        self.tr_finite = torch.ones(G, dtype=torch.bool, device=dev)
        self.tr_counts = [torch.zeros(G, C, dtype=torch.long, device=dev) for _ in range(3)]
        self.ev_loss = torch.zeros(G, dtype=torch.float64, device=dev)
        self.ev_n = torch.zeros((), dtype=torch.float64, device=dev)
        self.ev_counts = [torch.zeros(G, C, dtype=torch.long, device=dev) for _ in range(3)]
        # per test batch, weighted by its examples: loss, perplexity, macro accuracy (eval_reduce batch)
        self.ev_batch = torch.zeros(G, 3, dtype=torch.float64, device=dev)
        self.ev_examples = torch.zeros((), dtype=torch.float64, device=dev)

    def _train_state(self) -> list[torch.Tensor]:
        return [self.flat, self.exp_avg, self.exp_avg_sq, self.step_ctr, self.batch_ctr,
                self.tr_loss, self.tr_finite, *self.tr_counts]

    def _eval_state(self) -> list[torch.Tensor]:
        return [self.eval_ctr, self.ev_loss, self.ev_n, *self.ev_counts, self.ev_batch, self.ev_examples]

    # ------------------------------------------------------------------ the model
    def _member_fn(self, vmapped: bool = False):
        model, has_aux, biases = self.model, self.has_aux, self._linear_biases
        cast = self._vmap_bias_dtype() if vmapped else None

        def fn(params, x):
            if cast is not None:
                params = {**params, **{n: params[n].to(cast) for n in biases}}
            logits = functional_call(model, params, (x,))
            if has_aux:
                return logits, model.aux_loss()
            return logits

        return fn

    def _vmap_bias_dtype(self) -> torch.dtype | None:
        """The dtype to cast Linear biases to before a vmapped forward (None: no cast). Under vmap,
        autocast casts a Linear's input and weight but not its bias (the batching rule adds
        the bias after the autocast matmul), so every biased Linear returned fp32: the
        activations downstream ran in fp32 and attention fell off flash to the fp32 math path
        (seen on an H200: the transformer's step 2.3x slower). Autocast casts the bias
        outside vmap, so casting it here gives the per-member forward's numbers. (nn.Conv1d
        under vmap is not autocast at all, input included: it stays fp32, correct but slower;
        the hot causal convs go through ``ops.causal_conv``, which casts by hand.)"""
        if not self._linear_biases or not torch.is_autocast_enabled(self.dev.type):
            return None
        return torch.get_autocast_dtype(self.dev.type)

    def _forward(self, x: torch.Tensor, mode: str | None = None):
        """``x[B, L]`` -> (logits ``[G, B, L, V]``, aux ``[G]`` or None)."""
        mode = mode or self.mode
        fn = self._member_fn(vmapped=mode == "vmap")
        if mode == "single":  # one member: the model itself on its parameter views
            with _vmap_safe_attention(self.dev, self.opts.sdpa):
                out = fn({k: v[0] for k, v in self.params.items()}, x)
            out = tuple(o.unsqueeze(0) for o in out) if self.has_aux else out.unsqueeze(0)
        elif mode == "vmap":
            with _vmap_safe_attention(self.dev, self.opts.sdpa):
                out = vmap(fn, in_dims=(0, None), randomness="same")(self.params, x)
        else:
            outs = []
            replay = self.replay_rng and self.model.training
            if replay:  # every member draws the dropout masks its plain run would draw
                states = (torch.get_rng_state(),
                          torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None)
            for g in range(self.G):
                if replay:
                    torch.set_rng_state(states[0])
                    if states[1] is not None:
                        torch.cuda.set_rng_state(states[1], self.dev)
                outs.append(fn({k: v[g] for k, v in self.params.items()}, x))
            out = tuple(torch.stack(o) for o in zip(*outs)) if self.has_aux else torch.stack(outs)
        return out if self.has_aux else (out, None)

    def _losses(self, x, y, mode: str | None = None):
        G = self.G
        with self.autocast():
            logits, aux = self._forward(x, mode)
            lg = logits.float()
            ce = F.cross_entropy(lg.flatten(0, -2), y.expand(G, *y.shape).reshape(-1),
                                 ignore_index=IGNORE_INDEX, reduction="none").view(G, -1)
            loss = ce.sum(1) / (y != IGNORE_INDEX).sum()
            total = loss + self.base_cfg.aux_loss_weight * aux if aux is not None else loss
        return total, loss, lg

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor):
        """Forward and loss of every member: (sum of the members' total losses, task loss
        ``[G]`` detached, predictions ``[G, B*L]``). The first half of a step (compiled with
        ``compile``; autograd runs its backward between the halves)."""
        total, loss, logits = self._losses(x, y)
        return total.sum(), loss.detach(), logits.detach().argmax(-1).view(self.G, -1)

    @torch.no_grad()
    def _apply_update(self, grads, loss: torch.Tensor, preds: torch.Tensor, y: torch.Tensor) -> None:
        """Clipping, AdamW on the flat buffers and the metrics: the second half of a step,
        elementwise work over every parameter that ``compile`` fuses into a few kernels."""
        G, cfg = self.G, self.base_cfg
        g = torch.cat([gr.reshape(G, -1) if gr is not None else
                       torch.zeros(G, n, device=self.dev) for gr, n in zip(grads, self.numels)], 1)
        coef = self.sched.index_select(0, self.step_ctr).squeeze(0).float()  # [3, G]
        decay = torch.where(self.active, coef[0], 1.0)[:, None]
        neg_step = torch.where(self.active, coef[1], 0.0)[:, None]
        bc2_sqrt = coef[2][:, None]
        if cfg.grad_clip is not None:
            norm = torch.linalg.vector_norm(g, dim=1)
            clip = (cfg.grad_clip / (norm + 1e-6)).clamp(max=1.0)
            g = g * clip[:, None]
        if self.decay_mask is not None:
            decay = 1 + (decay - 1) * self.decay_mask
        beta1, beta2 = cfg.betas
        self.flat.mul_(decay)
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(ADAM_EPS)
        self.flat.addcdiv_(self.exp_avg * neg_step, denom)
        self.step_ctr.add_(1)
        # metrics (the trainer logs the task loss, without the auxiliary term)
        self.tr_finite.logical_and_(torch.isfinite(loss))
        self.tr_loss.add_(loss.double())
        for acc, c in zip(self.tr_counts, batched_counts(preds, y.reshape(-1), self.vocab, self.offsets)):
            acc.add_(c)

    def _step_on(self, x: torch.Tensor, y: torch.Tensor) -> None:
        eager = (self._forward_loss, self._apply_update)
        try:
            if self.compiled is not None and not self._breaks_counted:
                self._breaks_counted = True
                with _graph_breaks() as reasons:
                    self._run_step(*self.compiled, x, y)
                if reasons:
                    self.info.graph_breaks = reasons
                    log.warning("the compiled training step has %d graph break(s): those parts run "
                                "eagerly, unfused (first: %s)", len(reasons), reasons[0])
                return
            self._run_step(*(self.compiled or eager), x, y)
        except Exception as exc:  # noqa: BLE001 - a step that does not compile runs eagerly
            if self.compiled is None or self.info.compile_failure is not None:
                raise
            self.compiled = None
            self.info.compile_failure = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            self.info.compiled = False
            log.warning("torch.compile of the training step failed, running it eagerly (%s)",
                        self.info.compile_failure)
            self._run_step(*eager, x, y)

    def _run_step(self, forward_loss, apply_update, x: torch.Tensor, y: torch.Tensor) -> None:
        total, loss, preds = forward_loss(x, y)
        grads = torch.autograd.grad(total, self.leaves, allow_unused=True)
        apply_update(grads, loss, preds, y)

    def _train_step(self) -> None:
        idx = self.order[: self.n_full * self.bs].view(self.n_full, self.bs)
        idx = idx.index_select(0, self.batch_ctr.remainder(self.n_full)).view(self.bs)
        self._step_on(self.x_train.index_select(0, idx), self.y_train.index_select(0, idx))
        self.batch_ctr.add_(1)

    def _train_tail(self) -> None:
        idx = self.order[self.n_full * self.bs:]
        self._step_on(self.x_train.index_select(0, idx), self.y_train.index_select(0, idx))

    @torch.no_grad()
    def _eval_on(self, x, y) -> None:
        G = self.G
        with self.autocast():
            logits, _ = self._forward(x)
        lg = logits.float()
        ce = F.cross_entropy(lg.flatten(0, -2), y.expand(G, *y.shape).reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(G, -1).sum(1).double()
        n_tok = (y != IGNORE_INDEX).sum()
        self.ev_loss.add_(ce)
        self.ev_n.add_(n_tok)
        preds = lg.argmax(-1).view(G, -1)
        counts = batched_counts(preds, y.reshape(-1), self.vocab, self.offsets)
        for acc, c in zip(self.ev_counts, counts):
            acc.add_(c)
        # MAD-Lab's metrics: each per batch, then Lightning's batch-size-weighted epoch mean
        n_ex = float(x.shape[0])
        batch_loss = ce / n_tok.clamp(min=1)
        per_batch = torch.stack([batch_loss, batch_loss.exp(), batched_macro(*counts)], 1)
        self.ev_batch.add_(per_batch, alpha=n_ex)
        self.ev_examples.add_(n_ex)

    def _eval_step(self) -> None:
        L = self.x_test.shape[1]
        xs = self.x_test[: self.n_test_full * self.bs].view(self.n_test_full, self.bs, L)
        ys = self.y_test[: self.n_test_full * self.bs].view(self.n_test_full, self.bs, L)
        row = self.eval_ctr.remainder(self.n_test_full)
        self._eval_on(xs.index_select(0, row).squeeze(0), ys.index_select(0, row).squeeze(0))
        self.eval_ctr.add_(1)

    def _eval_tail(self) -> None:
        lo = self.n_test_full * self.bs
        self._eval_on(self.x_test[lo:], self.y_test[lo:])

    # ------------------------------------------------------------------ setup
    def compare_modes(self, x: torch.Tensor, y: torch.Tensor) -> "ModeCheck":
        """Loss and every parameter gradient of the vmapped forward against the per-member
        loop on one batch, under the run's precision (eval mode: no dropout masks to match).

        The vmapped path can be wrong where the per-member one is right (a batching rule that
        mishandles a dtype or a layout, seen with CUDA attention under bf16), so the engine
        trusts vmap only when both agree within the precision's tolerance."""
        self.model.eval()
        try:
            out = {}
            for mode in ("vmap", "loop"):
                total, loss, _ = self._losses(x, y, mode=mode)
                grads = torch.autograd.grad(total.sum(), self.leaves, allow_unused=True)
                out[mode] = (loss.detach().float(), [None if g is None else g.detach().float() for g in grads])
        finally:
            self.model.train()
        tol = ModeCheck.BF16_TOL if uses_bf16(self.base_cfg, self.dev) else ModeCheck.FP32_TOL
        (lv, gv), (ll, gl) = out["vmap"], out["loop"]
        loss_err = ((lv - ll).abs() / ll.abs().clamp(min=1e-6)).max().item()
        if not torch.isfinite(lv).all():
            loss_err = math.inf
        worst, worst_name = 0.0, ""
        for name, a, b in zip(self.names, gv, gl):
            if a is None or b is None:
                continue
            # per member, relative to the member's gradient norm (tiny gradients: absolute)
            G = a.shape[0]
            ref = b.reshape(G, -1).norm(dim=1).clamp(min=1e-3)
            err = ((a - b).reshape(G, -1).norm(dim=1) / ref).max().item()
            if not torch.isfinite(a).all():
                err = math.inf
            if err > worst:
                worst, worst_name = err, name
        return ModeCheck(loss_err, worst, worst_name, tol)

    def probe(self) -> None:
        """Pick vmap or loop (see the module docstring); find unused parameters and aux losses.

        The vmap check runs on ``PROBE_EXAMPLES`` training examples (a 2-example batch missed
        the mLSTM gradient error that an 8-example batch shows on an H200) and its verdict is
        kept per (spec, sequence length, vocabulary, members, precision, device): the settings
        of a suite that share them are probed once (:data:`_PROBED`)."""
        x, y = self.x_train[:PROBE_EXAMPLES], self.y_train[:PROBE_EXAMPLES]
        mode = self.opts.mode
        if mode not in ("auto", "vmap", "loop"):
            raise ValueError(f"mode must be auto|vmap|loop, got {mode!r}")
        with torch.random.fork_rng(devices=[self.dev] if self.dev.type == "cuda" else []):
            # aux losses and unused parameters, from one plain forward + backward
            with self.autocast():
                out = self.model(x)
                self.has_aux = self.model.aux_loss() is not None
            params = list(self.model.parameters())
            grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True)
            unused = [name for name, gr in zip(self.names, grads) if gr is None]
            if unused:  # torch.optim skips them: no weight decay either
                self.decay_mask = self._mask([d and gr is not None for d, gr in zip(self.decay_flags, grads)])
                self.info.notes.append(f"parameters without gradient, not updated: {unused}")
            if mode == "loop" or (mode == "auto" and self.G == 1):
                self.mode = "loop" if mode == "loop" else "single"
                return
            key = (self.spec_key, tuple(x.shape), self.vocab, self.G, uses_bf16(self.base_cfg, self.dev),
                   str(self.dev), self.opts.probe)
            if mode == "auto" and key in _PROBED:
                self.mode, self.info.fallback_reason = _PROBED[key]
                self.info.notes.append("vmap check: verdict of an earlier setting of the same shape")
                return
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    total, loss, _ = self._losses(x, y, mode="vmap")
                    torch.autograd.grad(total.sum(), self.leaves, allow_unused=True)
                slow = sorted({str(w.message).split(" Please")[0] for w in caught
                               if "performance drop" in str(w.message)})
                self.info.notes += slow
                if self.opts.probe:
                    check = self.compare_modes(x, y)
                    if not check.ok:
                        raise RuntimeError(check.describe())
                self.mode = "vmap"
            except Exception as exc:  # noqa: BLE001
                if mode == "vmap":
                    raise
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                self.info.fallback_reason = reason
                log.info("vmap unavailable for this spec, per-member loop (%s)", reason)
                self.mode = "loop"
            _PROBED[key] = (self.mode, self.info.fallback_reason)

    def build_programs(self) -> None:
        self.rebuild_s = self._timed(self._build_programs)  # capture (and compile, when captured)
        self.first_step_pending = True

    def _timed(self, fn) -> float:
        """Wall seconds of ``fn()``, the device's work included."""
        t0 = time.perf_counter()
        fn()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        return time.perf_counter() - t0

    def _build_programs(self) -> None:
        capture = self.capture
        self.replay_rng = self.mode == "loop" and self.dropout > 0 and self.G > 1
        if self.replay_rng:
            capture = False  # the RNG replay is host-side
        self.model.train()
        emulate = self.opts.emulate_capture
        self.train_prog = Program("train step", self._train_step, self.dev, self._train_state(),
                                  capture and self.n_full > 0, self.opts.capture_warmup,
                                  emulate and self.n_full > 0)
        self.model.eval()
        self.eval_prog = Program("eval step", self._eval_step, self.dev, self._eval_state(),
                                 capture and self.opts.capture_eval and self.n_test_full > 0,
                                 self.opts.capture_warmup, emulate and self.n_test_full > 0)
        self.model.train()
        self.info.captured_train = self.train_prog.captured
        self.info.captured_eval = self.eval_prog.captured
        self.info.capture_failure = self.train_prog.failure or self.eval_prog.failure

    def _compact(self) -> None:
        keep = [s for s, m in enumerate(self.slots) if not self.members[m].done]
        if len(keep) == self.G:
            return
        sel = torch.tensor(keep, device=self.dev)
        self.flat = self.flat.index_select(0, sel).contiguous()
        self.exp_avg = self.exp_avg.index_select(0, sel).contiguous()
        self.exp_avg_sq = self.exp_avg_sq.index_select(0, sel).contiguous()
        self.sched = self.sched.index_select(2, sel).contiguous()
        self.active = torch.ones(len(keep), dtype=torch.bool, device=self.dev)
        self.slots = [self.slots[s] for s in keep]
        self.train_prog = self.eval_prog = None  # frees the old graphs and their memory pools
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
        self._rebuild_views()
        self._alloc_metrics()
        self.build_programs()
        self.info.recaptures += 1

    # ------------------------------------------------------------------ the epoch loop
    def _read(self, evaluated: bool) -> list[dict]:
        """One host sync: each slot's train (and eval) numbers as Python floats."""
        cols = [self.tr_finite.double(), self.tr_loss]
        per = []
        for g in range(self.G):
            vals = [AccuracyCounts(*(c[g] for c in self.tr_counts)).micro()]
            if evaluated:
                ev = AccuracyCounts(*(c[g] for c in self.ev_counts))
                set_loss = self.ev_loss[g] / self.ev_n.clamp(min=1)
                if self.base_cfg.eval_reduce == "batch":
                    b = self.ev_batch[g] / self.ev_examples.clamp(min=1)
                    vals += [ev.micro(), b[2], b[0], b[1]]
                else:
                    vals += [ev.micro(), ev.macro(), set_loss, set_loss.clamp(max=700).exp()]
            per.append(torch.stack([v.double() for v in vals]))
        table = torch.cat([torch.stack(cols, 1), torch.stack(per)], 1).tolist()
        keys = ["finite", "loss_sum", "train_acc"] + (["acc", "acc_macro", "loss", "ppl"] if evaluated else [])
        return [dict(zip(keys, row)) for row in table]

    def _stop(self, m: _Member, slot: int) -> None:
        m.done = True
        self.active[slot] = False
        self._final_columns(m, slot)

    def _final_columns(self, m: _Member, slot: int) -> None:
        """The task's extra test columns (mqar-mixture: accuracy per segment) from the member's
        final parameters, read before compaction drops them; ok runs only, as the trainer."""
        if self.columns is None or m.result.status != "ok":
            return
        member = _MemberModel(self.model, {k: v[slot].detach() for k, v in self.params.items()})
        self.model.eval()
        with torch.no_grad(), self.autocast():
            m.result.extra = self.columns(member)
        self.model.train()

    def run(self, progress=None) -> list[RunResult]:
        cfg = self.base_cfg
        shuffle = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        if progress is not None:
            progress.start(self.total_steps)
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            running = [self.members[s] for s in self.slots if not self.members[s].done]
            n_active = len(running)
            order = torch.randperm(self.n, generator=shuffle)
            self.order.copy_(order)
            self.batch_ctr.zero_()
            self.tr_loss.zero_()
            self.tr_finite.fill_(True)
            for c in self.tr_counts:
                c.zero_()
            self.model.train()
            for i in range(self.n_full):
                if i == 0 and self.first_step_pending:  # a lazy compile happens here: a rebuild cost
                    self.rebuild_s += self._timed(self.train_prog)
                    self.first_step_pending = False
                else:
                    self.train_prog()
            if self.n_full * self.bs < self.n:
                self._train_tail()
            train_s = time.perf_counter() - t0  # (the host waits for the step at the epoch's read)
            self.info.steps += self.steps_per_epoch
            self.info.member_steps += self.steps_per_epoch * n_active
            evaluated = self.members[0].rules.evaluates(epoch)
            if evaluated:
                self.model.eval()
                self.eval_ctr.zero_()
                self.ev_loss.zero_()
                self.ev_n.zero_()
                self.ev_batch.zero_()
                self.ev_examples.zero_()
                for c in self.ev_counts:
                    c.zero_()
                for _ in range(self.n_test_full):
                    self.eval_prog()
                if self.n_test_full * self.bs < self.n_test:
                    self._eval_tail()
                self.model.train()
            stats = self._read(evaluated)
            if progress is not None:
                progress.advance(self.steps_per_epoch)
            self._apply_rules(epoch, stats, evaluated, progress)
            dt = time.perf_counter() - t0
            for m in running:
                m.wall_s += dt / n_active
            if epoch == cfg.epochs or all(m.done for m in self.members):
                for slot, mi in enumerate(self.slots):
                    if not self.members[mi].done:
                        self._final_columns(self.members[mi], slot)
                break  # (no compaction after the last epoch: nothing is left to train)
            dropped = sum(self.members[s].done for s in self.slots)
            if dropped and self._should_compact(dropped, cfg.epochs - epoch, train_s):
                t1 = time.perf_counter()
                self._compact()
                dt = time.perf_counter() - t1
                alive = [m for m in self.members if not m.done]
                for m in alive:
                    m.wall_s += dt / len(alive)
        return [m.result for m in self.members]

    def _should_compact(self, dropped: int, epochs_left: int, epoch_s: float) -> bool:
        mode = self.opts.compact
        if mode != "auto":
            return bool(mode)
        if self.compiled is None and not (self.train_prog and self.train_prog.captured):
            return True
        if compaction_pays(dropped, self.G, epochs_left, epoch_s, self.rebuild_s):
            return True
        self.info.compactions_skipped += 1
        return False

    def _apply_rules(self, epoch: int, stats: list[dict], evaluated: bool, progress) -> None:
        """The trainer's per-epoch rules (:class:`RunRules`), for each member still running."""
        best_acc, best_loss_seen = -1.0, math.inf
        for slot, mi in enumerate(self.slots):
            m = self.members[mi]
            if m.done:
                continue
            s = stats[slot]
            finite = bool(s["finite"])
            if m.rules.after_training(epoch, finite, s["loss_sum"] / self.steps_per_epoch if finite else math.nan,
                                      s["train_acc"]):
                self._stop(m, slot)
                continue
            if not evaluated:
                continue
            metrics = {"acc": s["acc"], "acc_macro": s["acc_macro"], "loss": s["loss"], "ppl": s["ppl"]}
            if math.isfinite(metrics["loss"]):
                best_acc = max(best_acc, metrics["acc"])
                best_loss_seen = min(best_loss_seen, metrics["loss"])
            if m.rules.after_eval(epoch, metrics):
                self._stop(m, slot)
        if evaluated and progress is not None and best_acc >= 0:
            progress.advance(0, acc=best_acc, loss=best_loss_seen, epoch=epoch)


def train_grid(spec: ArchitectureSpec, setting, cfgs: Sequence[TrainConfig],
               device: str | torch.device | None = None, progress=None, data=None,
               options: EngineOptions | None = None, on_eval: Sequence | None = None,
               info: EngineInfo | None = None) -> list[RunResult]:
    """Train ``spec`` on ``setting`` with every member config of ``cfgs`` (validated configs
    that differ only in lr and weight decay: a grid of the run layer's plan); one RunResult
    per member, in order, equal (up to fp32 rounding) to ``trainer.train`` of that member.

    ``on_eval``: one trainer-style callback (or None) per member. ``info``: an
    :class:`EngineInfo` to fill with what the engine did (mode, capture, fallbacks).
    """
    opts = options or EngineOptions()
    cfgs = list(cfgs)
    if not cfgs:
        return []
    chunk = opts.max_members or len(cfgs)
    if len(cfgs) > chunk:
        out: list[RunResult] = []
        seed = cfgs[0].seed
        data = data or (generate(setting, "train", seed), generate(setting, "test", seed))
        for lo in range(0, len(cfgs), chunk):
            cb = on_eval[lo:lo + chunk] if on_eval is not None else None
            out += train_grid(spec, setting, cfgs[lo:lo + chunk], device, progress, data, opts, cb, info)
        return out
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    info = info if info is not None else EngineInfo()
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            ens = build_ensemble(spec, setting, cfgs, dev, data, opts, info, on_eval)
            setup = time.perf_counter() - t0
            info.setup_s += setup
            with fp32_matmul(dev, cfgs[0], ens.model):
                results = ens.run(progress)
    except torch.cuda.OutOfMemoryError:
        if len(cfgs) == 1:
            raise
        ens = None
        torch.cuda.empty_cache()
        half = math.ceil(len(cfgs) / 2)
        info.notes.append(f"out of memory with {len(cfgs)} members: ensembles of {half}")
        log.warning("out of memory with %d members, retrying as ensembles of %d", len(cfgs), half)
        return train_grid(spec, setting, cfgs, dev, progress, data,
                          dataclasses.replace(opts, max_members=half), on_eval, info)
    info.wall_s += time.perf_counter() - t0
    for m, r in zip(ens.members, results):
        r.setup_s = setup / len(results)  # data, model, probe, capture and compile: a member's share
        r.wall_s = m.wall_s + r.setup_s
    return results


def compaction_pays(dropped: int, members: int, epochs_left: int, epoch_s: float, rebuild_s: float) -> bool:
    """Whether dropping ``dropped`` stopped members of ``members`` saves more step time over the
    ``epochs_left`` epochs still to train (at most: members may stop earlier) than rebuilding the
    step costs (``rebuild_s``, the last build measured: capture, and compilation for the new
    member count, which a compiled step pays again for every new count). The saving is taken as
    proportional to the member count, an upper bound where small models are launch-bound."""
    if dropped <= 0 or epochs_left <= 0:
        return False
    return epochs_left * epoch_s * dropped / members > rebuild_s


def build_ensemble(spec: ArchitectureSpec, setting, cfgs: Sequence[TrainConfig], device: torch.device,
                   data=None, options: EngineOptions | None = None, info: EngineInfo | None = None,
                   on_eval: Sequence | None = None) -> Ensemble:
    """Data on the device, the model built as the trainer builds it (``manual_seed(seed)``
    first: call inside ``torch.random.fork_rng`` to leave the caller's RNG alone), probed and
    with its step programs captured: ready to ``run``."""
    opts = options or EngineOptions()
    seed = cfgs[0].seed
    data = data or (generate(setting, "train", seed), generate(setting, "test", seed))
    model, x_train, y_train, x_test, y_test, vocab = prepare_run(spec, setting, seed, device, data)
    columns = None
    test_columns = extra_columns(setting)  # task hook (mqar-mixture segments)
    if test_columns is not None:
        bs = cfgs[0].batch_size
        columns = lambda member: test_columns(member, x_test, data[1], bs)  # noqa: E731
    ens = Ensemble(model, cfgs, x_train, y_train, x_test, y_test, vocab, device, opts, info, on_eval,
                   columns)
    ens.probe()
    ens.build_programs()
    ens.info.mode, ens.info.members = ens.mode, len(cfgs)
    return ens
