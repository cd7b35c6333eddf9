"""The optimisation of a training run: timm optimiser, per-update LR schedule and loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasfuse.training._config import TrainingConfig

__all__ = ["Optimization", "build_optimization"]


@dataclass
class Optimization:
    """What :func:`build_optimization` makes for a run (see :class:`TrainingConfig`)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module


def build_optimization(cfg: TrainingConfig, net: nn.Module, updates_per_epoch: int) -> Optimization:
    """The config's optimiser over ``net``, its scheduler and its loss.

    The scheduler steps per optimiser update (``step_on_epochs=False``), so its length is
    ``cfg.epochs * updates_per_epoch`` updates; weight decay leaves biases and norms out
    (timm's parameter groups); label smoothing 0 is the plain cross-entropy.
    """
    import timm.loss
    import timm.optim
    import timm.scheduler

    optimizer = timm.optim.create_optimizer_v2(
        net,
        opt=cfg.opt,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )
    scheduler, _ = timm.scheduler.create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.warmup_lr,
        min_lr=cfg.min_lr,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    if cfg.label_smoothing > 0:
        loss_fn: nn.Module = timm.loss.LabelSmoothingCrossEntropy(cfg.label_smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()
    return Optimization(optimizer, scheduler, loss_fn)
