"""Several processes (GPUs or machines) with PyTorch DDP, started by ``torchrun``.

``torchrun --nproc-per-node N -m nasfuse train-supernet ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup_distributed`
reads them, joins the process group (NCCL on CUDA, gloo on CPU) and picks this process's
device. Without those variables everything runs in one process, unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nasfuse.training.evaluation import batchnorm_layers

__all__ = ["DistributedContext", "setup_distributed", "average_bn_stats", "all_reduce_sums"]


@dataclass
class DistributedContext:
    """Where this process stands: rank, world size, its device, and whether it set up the group.

    Attributes:
        rank: this process's rank (0 when not distributed).
        world_size: the number of processes (1 when not distributed).
        device: the device this process trains on.
        owns_group: True if :func:`setup_distributed` created the process group (then
            :meth:`close` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup_distributed() -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    If a group is already initialised (the caller set it up), it is used as it is.
    """
    cuda = torch.cuda.is_available()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        owns = False
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
        rank, world = dist.get_rank(), dist.get_world_size()
        owns = True
    else:
        device = torch.device("cuda") if cuda else torch.device("cpu")
        return DistributedContext(device=device)
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistributedContext(rank=rank, world_size=world, device=device, owns_group=owns)


@torch.no_grad()
def average_bn_stats(model: nn.Module, context: DistributedContext) -> None:
    """Average BatchNorm running statistics over the ranks.

    Each rank updates its running statistics from its own batches, so they drift apart
    between DDP's buffer broadcasts; averaging them at the end of an epoch leaves every rank
    with the same (and better-estimated) statistics, and so with identical weights.
    """
    if not context.distributed:
        return
    for layer in batchnorm_layers(model):
        for tensor in (layer.running_mean, layer.running_var):
            if tensor is not None:
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
                tensor.div_(context.world_size)


def all_reduce_sums(values: list[float], context: DistributedContext) -> list[float]:
    """Sum ``values`` over the ranks (identity with one process)."""
    if not context.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
