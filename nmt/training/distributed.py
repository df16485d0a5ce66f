"""Data-parallel training with ``torch.distributed`` as launched by ``torchrun``.

``torchrun --nproc_per_node=N -m nmt.cli.train ...`` starts N processes with RANK / WORLD_SIZE / LOCAL_RANK
set; each trains a DistributedDataParallel replica on its own shard of the batches (NCCL on GPUs, gloo
on CPUs). Rank 0 alone logs, validates, writes checkpoints and evaluates; its decisions (stop or go,
the run directory, whether a checkpoint was written) are broadcast, and what any rank may see alone (out of
memory, a non-finite loss, a signal) is all-reduced, so that every rank takes the same turn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun set up (no-op for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's value of ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(value: int, ctx: DistContext) -> int:
    """The sum of ``value`` over all ranks."""
    return _all_reduce(value, dist.ReduceOp.SUM, ctx)


def all_reduce_max(value: int, ctx: DistContext) -> int:
    """The largest ``value`` of any rank: how every rank agrees on an event that only some saw (a batch out
    of memory, a non-finite loss, a signal) before the next collective, which all of them must enter or none."""
    return _all_reduce(value, dist.ReduceOp.MAX, ctx)


def _all_reduce(value: int, op: dist.ReduceOp, ctx: DistContext) -> int:
    if not ctx.enabled:
        return value
    box = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        box = box.cuda()
    dist.all_reduce(box, op=op)
    return int(box.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
