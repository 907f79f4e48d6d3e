"""DistributedDataParallel set-up from torchrun's environment (nccl on CUDA, gloo on the CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from orthodiff_auto.training.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str, backend: str | None = None,
                     timeout: timedelta | None = None) -> DistributedContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise. On CUDA the
    process's GPU is set from LOCAL_RANK first. ``backend``: default nccl on CUDA, gloo on the CPU. ``timeout``:
    how long a collective (a barrier) waits for the slowest process; default torch's (10 min with nccl, 30 min
    with gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        backend = backend or ("nccl" if device_type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, **({"timeout": timeout} if timeout is not None else {}))
    return DistributedContext(rank, world_size, local_rank)


def distributed_device(requested: str | None, backend: str | None = None,
                       timeout: timedelta | None = None) -> tuple[torch.device, DistributedContext]:
    """The device of a run (``training.device.resolve_device``) and, under torchrun, its process group
    (``init_distributed``; a CUDA device is then the process's own GPU). Call ``shutdown(ctx)`` when the run
    ends."""
    ctx = init_distributed(resolve_device(requested).type, backend, timeout)
    return resolve_device(requested, ctx.local_rank, ctx.enabled), ctx


def training_timeout(config) -> timedelta:
    """The process group's timeout of a training run (``TrainingConfig.ddp_timeout_minutes``)."""
    return timedelta(minutes=float(config.ddp_timeout_minutes))


def per_rank_batch_size(batch_size: int, ctx: DistributedContext) -> int:
    """Each process's share of the global batch (rounded up, at least 1)."""
    return max(1, -(-batch_size // ctx.world_size))


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_mean(t: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    if ctx.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return t


def gather_objects(obj, ctx: DistributedContext) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` outside torchrun."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
