"""torchrun support: process group setup, rank-0 checks, gradient and buffer synchronisation.

A plain `msgf train` is a world of one process and never touches torch.distributed. Under
torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment) every process trains its shard;
rank 0 alone logs and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init(device: str | None) -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(world.local_rank)
            return world, torch.device("cuda", world.local_rank)
        return world, torch.device("cpu")
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return World(), torch.device(name)


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    if world.distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(world: World):
    """A callable averaging the gradients of a module over processes (None for one process)."""
    if not world.distributed:
        return None

    def reduce(module: torch.nn.Module) -> None:
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world.size
    return reduce


def broadcast_buffers(world: World, module: torch.nn.Module) -> None:
    """BatchNorm statistics of rank 0 everywhere: DDP syncs them before each forward only,
    so after an epoch each rank holds the statistics of its own last batch."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def broadcast_parameters(world: World, module: torch.nn.Module) -> None:
    """Rank 0's weights everywhere, for weights each rank trains alone from the same stream
    (stage 0's locator and f_G fine-tuning): CUDA's float arithmetic need not agree across ranks."""
    if world.distributed:
        for parameter in module.parameters():
            dist.broadcast(parameter.data, src=0)


def broadcast_object(world: World, value):
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
