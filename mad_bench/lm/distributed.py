"""Data-parallel LM training on torch.distributed: DDP, or FSDP (``fully_shard``) for models
that do not fit one device.

``launch(nproc, fn, *args)`` starts ``nproc`` processes the way ``torchrun`` does for one host
(``torch.multiprocessing`` spawn, rendezvous through ``MASTER_ADDR`` / ``MASTER_PORT`` /
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``). A process started by ``torchrun`` itself finds the
same variables and joins through :func:`init_from_env`. Backend: nccl on CUDA, gloo on the CPU.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_from_env(device_type: str) -> World:
    """Join the process group the environment describes (torchrun's variables); a lone
    process (no ``WORLD_SIZE`` or 1) is a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend, rank=rank, world_size=size)
    return World(rank, size, local)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, nproc: int, port: int, threads: int, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc))
    torch.set_num_threads(threads)
    try:
        fn(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(nproc: int, fn, *args) -> None:
    """Run ``fn(*args)`` in ``nproc`` fresh processes of one host (``fn`` must be importable:
    a module-level function). Raises if any process fails."""
    import torch.multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // nproc)
    mp.spawn(_worker, args=(nproc, free_port(), threads, fn, args), nprocs=nproc, join=True)


def wrap(model: nn.Module, world: World, device: torch.device, fsdp: bool) -> nn.Module:
    """The model as this world trains it: itself, DDP, or sharded in place by ``fully_shard``
    (each block a unit, then the root)."""
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not world.distributed:
            raise ValueError("--fsdp needs --nproc 2 or more (or a torchrun launch)")
        for block in model.stack.blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(values: list[float], device: torch.device, world: World) -> list[float]:
    """Element-wise sum over ranks (the values themselves in a world of one)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def full_state(model: nn.Module, opt: torch.optim.Optimizer, fsdp: bool) -> tuple[dict, dict]:
    """Unsharded (model, optimizer) state dicts on the CPU of the unwrapped ``model``: a
    collective under FSDP (every rank calls it), the plain state dicts otherwise."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict(), opt.state_dict()


def load_full_state(model: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict,
                    fsdp: bool) -> None:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, opt, model_state_dict=model_sd, optim_state_dict=opt_sd,
                       options=StateDictOptions(full_state_dict=True))
        return
    model.load_state_dict(model_sd)
    opt.load_state_dict(opt_sd)
