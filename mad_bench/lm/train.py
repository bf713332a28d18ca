"""A spec trained as a byte-level causal language model on real text.

The numerics are the synthetic trainer's (``train.core``): AdamW, cosine schedule to ``min_lr``
after an optional warmup, gradient clipping, bf16 autocast on CUDA, the layers' auxiliary losses.
Counted in steps, not epochs: a corpus is not passed over. Every ``eval_every`` steps (and at
the end) the fixed validation windows are scored (loss in nats per byte, bits per byte = loss /
ln 2) and a checkpoint is written atomically (model, optimizer, step, RNG state), from which
``resume`` continues as if never stopped: a batch is a function of its step alone (see data.py).

Distributed (``World`` of several processes): each rank takes its slice of the global batch, so
the run matches the one-process run at the same ``batch_size``; only rank 0 writes.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..compiler import build_model
from ..configs.architecture import ArchitectureSpec
from ..spec import load_spec
from ..configs.train import TrainConfig
from ..train.core import autocast, cosine_lr, fp32_matmul, resolve_device
from . import distributed as D
from .data import VOCAB_SIZE, Corpus, check_lengths, load_corpus, train_batch, val_starts, windows

LN2 = math.log(2.0)
CHECKPOINT_NAME = "last.pt"


@dataclass
class LMConfig:
    """Everything one LM run is set up from (the CLI's flags)."""

    corpus: str = "stdlib"
    max_bytes: int = 64 << 20
    val_fraction: float = 0.05
    seq_len: int = 256
    batch_size: int = 32          # global: split over the ranks
    steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    precision: str = "auto"
    seed: int = 0
    eval_every: int = 100
    val_windows: int = 64
    device: str = "auto"
    compile: bool = False
    fsdp: bool = False

    def __post_init__(self):
        for name in ("max_bytes", "seq_len", "batch_size", "steps", "eval_every", "val_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        self.betas = tuple(self.betas)
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr}: must be > 0")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"--min-lr {self.min_lr}: must be in [0, --lr {self.lr}]")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError(f"--warmup-steps {self.warmup_steps} and --wd {self.weight_decay} "
                             "must be >= 0")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"--precision {self.precision!r} is not valid (valid: auto, fp32, bf16)")

    def training(self) -> TrainConfig:
        """The shared trainer's config for these numerics (autocast and schedule read it)."""
        return TrainConfig(batch_size=self.batch_size, lr=self.lr, min_lr=self.min_lr,
                           warmup_steps=self.warmup_steps, weight_decay=self.weight_decay,
                           betas=self.betas, grad_clip=self.grad_clip, precision=self.precision,
                           seed=self.seed)

    def outcome_fields(self) -> dict:
        """What determines the trained model (not the device, the eval cadence or the launch)."""
        skip = {"device", "compile", "fsdp", "eval_every", "corpus"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class LMResult:
    status: str = "ok"                 # ok | diverged
    step: int = 0
    val_loss: float = float("nan")     # nats per byte, last evaluation
    val_bpb: float = float("nan")
    train_loss: float = float("nan")   # mean over the steps since the previous evaluation
    tokens_per_s: float = float("nan") # training tokens (all ranks) per second of training
    params: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    row: dict | None = None


def run_key_of(spec: ArchitectureSpec, cfg: LMConfig, corpus: Corpus) -> str:
    from ..results.store import run_key

    return run_key(spec.spec_hash(), f"lm:{corpus.name}", {"corpus": corpus.fingerprint},
                   cfg.outcome_fields())


def _device_for(cfg: LMConfig, world: D.World) -> torch.device:
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def evaluate(model, corpus: Corpus, starts: torch.Tensor, cfg: LMConfig, tc: TrainConfig,
             device: torch.device, world: D.World) -> float:
    """Mean loss (nats per byte) over the validation windows, summed over ranks. Each rank gets
    the same number of forward calls (padding with weight-0 windows: FSDP's forward is a
    collective)."""
    mine = starts[world.rank::world.size]
    per_rank = math.ceil(len(starts) / world.size)
    weights = torch.ones(per_rank, dtype=torch.float64)
    if len(mine) < per_rank:
        weights[len(mine):] = 0.0
        mine = torch.cat([mine, starts[:per_rank - len(mine)]])
    chunk = max(1, cfg.batch_size // world.size)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(0, per_rank, chunk):
            x, y = windows(corpus.val, mine[i:i + chunk], cfg.seq_len)
            with autocast(device, tc):
                logits = model(x.to(device))
            nll = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(),
                                  reduction="none").view(len(x), -1).sum(1).double()
            total += float((nll.cpu() * weights[i:i + chunk]).sum())
    model.train()
    loss_sum, = D.all_sum([total], device, world)
    return loss_sum / (len(starts) * cfg.seq_len)


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)


def train_lm(spec, cfg: LMConfig, checkpoint_dir: str | Path | None = None, resume: bool = False,
             stop_after: int | None = None, results: str | Path | None = None,
             progress: bool = False, corpus: Corpus | None = None) -> LMResult:
    """Train ``spec`` as a byte-level LM (in this process: one rank of whatever world the
    environment describes). ``stop_after``: leave after this many steps of this invocation
    (the schedule still runs to ``cfg.steps``; ``resume`` continues). ``results``: store the
    run's row there (rank 0) once it has run all its steps."""
    spec = load_spec(spec)
    tc = cfg.training()
    world = D.init_from_env(resolve_device(cfg.device).type)
    device = _device_for(cfg, world)
    if cfg.batch_size % world.size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of --nproc {world.size} "
                         "(each process takes an equal slice of the global batch)")
    corpus = corpus or load_corpus(cfg.corpus, cfg.max_bytes, cfg.val_fraction)
    check_lengths(corpus, cfg.seq_len)
    key = run_key_of(spec, cfg, corpus)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    torch.manual_seed(cfg.seed)
    raw = build_model(spec, vocab_size=VOCAB_SIZE, max_len=cfg.seq_len, backbone="lm").to(device)
    n_params = raw.num_params()
    model = D.wrap(raw, world, device, cfg.fsdp)  # FSDP shards ``raw`` in place; DDP shares its tensors
    if cfg.compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=cfg.betas)
    result = LMResult(params=n_params, checkpoint=str(ckpt_path) if ckpt_path else None)
    start, train_time, tokens_done = 0, 0.0, 0
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt_path)!r}")
        state = load_checkpoint(ckpt_path)
        if state["key"] != key:
            raise ValueError(f"--resume: the checkpoint {str(ckpt_path)!r} is of another run (spec "
                             f"{state['spec_name']!r}, corpus {state['corpus']!r}, its settings); use "
                             "the same spec, corpus and flags, or another --checkpoint-dir")
        D.load_full_state(raw, opt, state["model"], state["optim"], cfg.fsdp)
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start, train_time, tokens_done = state["step"], state["train_time"], state["tokens"]
        result.history = state["history"]
        if result.history:  # the numbers so far (all of them if the run had already finished)
            last = result.history[-1]
            result.step, result.val_loss, result.val_bpb = last["step"], last["val_loss"], last["val_bpb"]
            result.train_loss, result.tokens_per_s = last["train_loss"], last["tokens_per_s"]
    starts_val = val_starts(corpus, cfg.seq_len, cfg.val_windows)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)

    bar = None
    if progress and world.main:
        from ..progress import RunBar, make_progress

        prog = make_progress(True)
        prog.start()
        bar = RunBar(prog, f"lm {spec.name} on {corpus.name}")
        bar.start(cfg.steps)
        bar.advance(start)

    t_wall = time.perf_counter()
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)
    n_acc = 0
    t0 = time.perf_counter()
    with fp32_matmul(device, tc, raw):  # a bf16 run's fp32 islands at TF32 where a layer asks
        try:
            for step in range(start, end):
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(step, cfg.steps, tc)
                x, y = train_batch(corpus, cfg.seq_len, cfg.batch_size, cfg.seed, step, world.rank, world.size)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast(device, tc):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                    aux = raw.aux_loss()
                    total = loss + tc.aux_loss_weight * aux if aux is not None else loss
                opt.zero_grad(set_to_none=True)
                total.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                loss_acc += loss.detach().double()
                n_acc += 1
                tokens_done += cfg.batch_size * cfg.seq_len
                done = step + 1
                if bar is not None:
                    bar.advance(1)
                if done % cfg.eval_every and done != end:
                    continue
                # -- evaluation point: time, loss, validation, checkpoint -----------------------
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                train_time += time.perf_counter() - t0
                train_loss, = D.all_sum([float(loss_acc) / n_acc], device, world)
                result.train_loss = train_loss / world.size
                loss_acc.zero_()
                n_acc = 0
                result.val_loss = evaluate(model, corpus, starts_val, cfg, tc, device, world)
                result.val_bpb = result.val_loss / LN2
                result.step = done
                result.tokens_per_s = tokens_done / train_time if train_time > 0 else float("nan")
                record = {"step": done, "train_loss": result.train_loss, "val_loss": result.val_loss,
                          "val_bpb": result.val_bpb, "tokens_per_s": result.tokens_per_s}
                result.history.append(record)
                if bar is not None:
                    bar.advance(0, val_loss=result.val_loss, bpb=result.val_bpb,
                                tok_s=f"{result.tokens_per_s:,.0f}")
                if not (math.isfinite(result.val_loss) and math.isfinite(result.train_loss)):
                    result.status = "diverged"
                    break
                if ckpt_path is not None:
                    model_sd, opt_sd = D.full_state(raw, opt, cfg.fsdp)
                    if world.main:
                        _save_atomic({"key": key, "spec": spec.to_dict(), "spec_name": spec.name,
                                      "spec_hash": spec.spec_hash(), "corpus": corpus.name,
                                      "config": asdict(cfg), "max_len": cfg.seq_len, "step": done,
                                      "model": model_sd, "optim": opt_sd, "rng": torch.get_rng_state(),
                                      "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                      "train_time": train_time, "tokens": tokens_done,
                                      "history": result.history}, ckpt_path)
                    D.barrier(world)
                t0 = time.perf_counter()
        finally:
            if bar is not None:
                bar.progress.stop()
    result.wall_s = time.perf_counter() - t_wall
    if results is not None and world.main and (result.step == cfg.steps or result.status != "ok"):
        result.row = lm_row(spec, cfg, corpus, result, device, world.size)
        from ..results.store import ResultsStore

        ResultsStore(results).write(key, result.row)
    return result


def lm_row(spec: ArchitectureSpec, cfg: LMConfig, corpus: Corpus, result: LMResult,
           device: torch.device, nproc: int) -> dict:
    """The results-store row of an LM run: ``kind: lm``, ``task: lm:<corpus>``; the synthetic
    views (leaderboards, MAD plots) leave such rows out. ``test_loss`` is the validation loss."""
    from .. import __version__
    from ..run.rows import device_name, sequence_mixer

    return {
        "kind": "lm", "spec": spec.name, "spec_hash": spec.spec_hash(),
        "primitives": spec.primitives_summary(), "mixer": sequence_mixer(spec), "d_model": spec.d_model,
        "params": result.params, "suite": "lm", "task": f"lm:{corpus.name}",
        "setting": f"seq_len={cfg.seq_len}", "corpus": corpus.name, "corpus_fingerprint": corpus.fingerprint,
        "train_bytes": len(corpus.train), "val_bytes": len(corpus.val),
        "vocab_size": VOCAB_SIZE, "seq_len": cfg.seq_len, "batch_size": cfg.batch_size,
        "steps": cfg.steps, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "seed": cfg.seed,
        "status": result.status, "test_loss": result.val_loss, "val_bpb": result.val_bpb,
        "train_loss": result.train_loss, "tokens_per_s": result.tokens_per_s,
        "tokens": cfg.steps * cfg.batch_size * cfg.seq_len, "nproc": nproc, "fsdp": cfg.fsdp,
        "wall_s": result.wall_s, "device": device_name(device), "version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _spawned(spec_data: dict, jobs: list[tuple[dict, dict]], out_path: str) -> None:
    """One process of ``launch``: train each job in turn (one process group for all), and rank 0
    leaves the results for the parent."""
    results = [asdict(train_lm(spec_data, LMConfig(**cfg_data), **kwargs)) for cfg_data, kwargs in jobs]
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, out_path)


def run_lm_jobs(spec, jobs: list[tuple[LMConfig, dict]], nproc: int) -> list[LMResult]:
    """Several runs of ``spec`` (``(config, train_lm keyword arguments)`` each), one after the
    other in the same ``nproc`` fresh processes: their start-up is paid once."""
    import tempfile

    spec = load_spec(spec)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.pt"
        D.launch(nproc, _spawned, spec.to_dict(), [(asdict(c), kw) for c, kw in jobs], str(out))
        return [LMResult(**r) for r in torch.load(out, weights_only=False)]


def run_lm(spec, cfg: LMConfig, nproc: int = 1, **kwargs) -> LMResult:
    """``train_lm`` in this process (``nproc`` 1) or across ``nproc`` fresh processes."""
    if nproc <= 1:
        return train_lm(spec, cfg, **kwargs)
    kwargs.pop("corpus", None)  # each process reads the corpus itself
    return run_lm_jobs(spec, [(cfg, kwargs)], nproc)[0]
