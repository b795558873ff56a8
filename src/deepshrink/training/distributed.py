"""The one place that knows about torch.distributed.

Under `torchrun` (WORLD_SIZE > 1 in the environment) `setup` joins the process group from the
environment (gloo on CPU, NCCL on CUDA), the model is wrapped in DistributedDataParallel and every
rank reads its own shard with a per-rank batch of `batch_size // world_size`, so the global batch
(and hence the trajectory) matches a single-process run. Only rank 0 writes files and draws
progress; metrics are summed across ranks.

BatchNorm statistics are per rank (no SyncBatchNorm): running stats are computed on each rank's
shard and the ones saved are rank 0's. With small per-rank batches this differs slightly from a
single-process run; BN-free models match it up to float rounding. Validation is sharded too; when
the split does not divide by world_size the loader wraps round, so a few images count twice.
Resume under DDP restores weights, optimiser and schedule exactly and rank 0's RNG state on every
rank; bit-exact resume is promised for single-process CPU runs."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.training.config import Device


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # True when `setup` created the process group (and `teardown` ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def local_batch(self, batch_size: int) -> int:
        if batch_size % self.world_size:
            raise ConfigError(
                f"batch_size: {batch_size} is not divisible by the {self.world_size} processes "
                "(the global batch is split evenly across ranks)"
            )
        return batch_size // self.world_size


def resolve_device(device: Device, local_rank: int = 0) -> torch.device:
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but CUDA is not available")
    if device is Device.CPU or (device is Device.AUTO and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup(device: Device) -> DistContext:
    """Join the process group when launched by torchrun; a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(0, 1, 0, target, owns_group=False)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo", init_method="env://")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, target, owns_group=owns)


def teardown(ctx: DistContext, *, finished: bool = False) -> None:
    # After a finished run, a barrier first: a rank that destroys the group while another still
    # talks to it aborts in gloo ("terminate called without an active exception", 1 run in 3 here).
    # After an error, no barrier: it would hang the ranks that did not fail.
    if ctx.owns_group and dist.is_initialized():
        if finished:
            dist.barrier()
        gc.collect()  # the DDP wrapper sits in reference cycles: free its reducer while the group lives
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around `model` when distributed; `model` itself otherwise."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Average grads of parameters DDP does not manage (e.g. an objective's own regressors)."""
    if not ctx.distributed:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad.div_(ctx.world_size)
