"""Data-parallel training across processes (`torchrun --nproc_per_node=N -m attrobust train ...`).

Every process holds the whole model and data, shuffles with the same generator and takes every N-th example of
each batch (rank r: positions r, r + N, ...). After each backward pass the gradients are combined so that the step
equals the single-process step on the whole batch: summed over ranks for `reduction: sum`, weighted by each
shard's share of the batch for `reduction: mean`. Only rank 0 writes files. Random starts of inner attacks are
drawn per rank, so runs with random starts match a single process in distribution, not bitwise; deterministic
objectives match it up to floating-point summation order. Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from datetime import timedelta
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_rank() -> int:
    """This process's rank as torchrun announces it (0 outside torchrun), before any process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_environment(device: torch.device, timeout: timedelta | None = None) -> World:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a single process otherwise. `timeout`: how long a
    collective waits for the slowest rank (torch's default when None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return world()


def device_for_rank(device: torch.device) -> torch.device:
    """cuda -> cuda:LOCAL_RANK under torchrun; unchanged otherwise."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shared_run_dir(run_dir: Path) -> Path:
    """Rank 0's run dir on every rank (each process's Hydra made its own; the others stay unused)."""
    if world().size == 1:
        return run_dir
    box = [str(run_dir)]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def broadcast_parameters(model: nn.Module) -> None:
    if world().size > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def shard(index: Tensor) -> Tensor:
    here = world()
    return index[here.rank::here.size]


def combine_gradients(model: nn.Module, shard_size: int, batch_size: int, reduction: str) -> None:
    """Make every rank's gradient the gradient of the whole batch's loss (see the module doc)."""
    here = world()
    if here.size == 1:
        return
    weight = 1.0 if reduction == "sum" else shard_size / batch_size
    for parameter in model.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        parameter.grad.mul_(weight)
        dist.all_reduce(parameter.grad)


def all_ranks(flag: Tensor) -> bool:
    """True when `flag` (a bool scalar) is true on every rank: one wait for the device, one collective."""
    if world().size > 1:
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)


def sum_over_ranks(values: dict[str, Tensor], count: int) -> tuple[dict[str, Tensor], int]:
    """Element-wise sums of the log sums and the example counts of every rank (the same keys on every rank)."""
    if world().size == 1:
        return values, count
    keys = list(values)  # the same order on every rank (same objective)
    packed = torch.stack([values[key].detach().double() for key in keys] + [torch.tensor(float(count)).to(
        next(iter(values.values())).device)])
    dist.all_reduce(packed)
    return {key: packed[i] for i, key in enumerate(keys)}, int(packed[-1].item())


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
