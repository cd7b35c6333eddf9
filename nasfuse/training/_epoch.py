"""One epoch of training: a pass over the loader with an optimiser step per batch.

:func:`train_one_epoch` works on an :class:`EpochParts` (the model and the objects that
optimise it), so it runs the same inside a :class:`~nasfuse.training._loop.TrainingRun`
and on its own (``experiments/profile_quick.py`` times it on a trainer's parts).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.profiler import record_function

from nasfuse.training.distributed import DistributedContext, all_reduce_sums

__all__ = ["EpochParts", "EpochResult", "Precision", "train_one_epoch"]


@dataclass
class Precision:
    """How the forward pass runs: autocast dtype (None: float32) and memory format."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def choose(cls, device: torch.device, amp: bool, channels_last: bool) -> Precision:
        """AMP and channels_last only on CUDA; bf16 where the GPU supports it, else fp16."""
        if device.type != "cuda":
            return cls(device)
        dtype = None
        if amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return cls(device, dtype, channels_last)

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled for fp16 only (bf16 and float32 do not need one)."""
        return torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


@dataclass
class EpochParts:
    """What an epoch of training works with: the network and the objects that optimise it.

    Attributes:
        model: the network to train (DDP-wrapped when distributed).
        optimizer: its optimiser.
        scheduler: a timm scheduler; ``step_update`` is called after every optimiser step.
        loss_fn: the loss of ``(float logits, labels)``.
        precision: autocast and memory format of the forward pass.
        scaler: the GradScaler (enabled for fp16 only).
        context: the distributed context, for the epoch's totals over every rank.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module
    precision: Precision
    scaler: torch.amp.GradScaler
    context: DistributedContext


@dataclass
class EpochResult:
    """Mean training loss and accuracy of one epoch (over every rank), and its step count."""

    loss: float
    accuracy: float
    steps: int


class _Tally:
    """Running sums of an epoch's loss and correct predictions, per image."""

    def __init__(self) -> None:
        self.loss_sum = self.correct = self.seen = 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        batch = len(labels)
        self.loss_sum += float(loss.detach()) * batch
        self.correct += float((logits.detach().argmax(dim=1) == labels).sum())
        self.seen += batch

    def postfix(self) -> dict[str, str]:
        """The progress bar's running loss and accuracy."""
        return {
            "loss": f"{self.loss_sum / self.seen:.3f}",
            "acc": f"{self.correct / self.seen:.3f}",
        }

    def result(self, steps: int, context: DistributedContext) -> EpochResult:
        """The means over every rank's images."""
        loss_sum, correct, seen = all_reduce_sums([self.loss_sum, self.correct, self.seen], context)
        return EpochResult(loss_sum / max(seen, 1.0), correct / max(seen, 1.0), steps)


def _train_step(
    parts: EpochParts,
    images: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    clip_grad: float | None,
    description: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and one optimiser step on a batch already on the device.

    Returns ``(loss, logits)``.

    Raises:
        RuntimeError: the loss is not finite (no step is taken then).
    """
    optimizer, scaler = parts.optimizer, parts.scaler
    with record_function("train/forward"), parts.precision.autocast():
        logits = parts.model(images)
        loss = parts.loss_fn(logits.float(), labels)
    if not torch.isfinite(loss):
        raise RuntimeError(
            f"{description}: the loss is {loss.item()} at step {step}; "
            "lower the learning rate (lr=...) or set clip_grad"
        )
    with record_function("train/backward"):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
    with record_function("train/optimizer"):
        if clip_grad is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for group in optimizer.param_groups for p in group["params"]], clip_grad
            )
        scaler.step(optimizer)
        scaler.update()
    return loss, logits


def train_one_epoch(
    parts: EpochParts,
    loader: torch.utils.data.DataLoader,
    *,
    global_step: int,
    before_step: Callable[[int], None] | None = None,
    clip_grad: float | None = None,
    progress: bool = True,
    description: str = "train",
) -> EpochResult:
    """One pass over ``loader`` with an optimiser step per batch.

    Args:
        parts: the network and what optimises it.
        loader: the training batches ``(images, labels)``.
        global_step: optimiser steps taken before this epoch.
        before_step: called with the global step number before each step (the supernet
            sets its path there).
        clip_grad: clip the gradient norm to this (None: no clipping).
        progress: show a progress bar (on the main process only).
        description: the progress bar's label, and the start of a non-finite loss's error.

    Returns:
        The epoch's mean loss and accuracy over all ranks, and its number of steps.
    """
    from nasfuse.progress import progress_bar

    parts.model.train()
    tally = _Tally()
    steps = 0
    bar = progress_bar(
        loader,
        desc=description,
        disable=not (progress and parts.context.is_main),
        dynamic_ncols=True,
        leave=True,
    )
    # The record_function labels name each phase in a torch.profiler trace
    # (experiments/profile_quick.py); without a profiler they cost next to nothing.
    batches = iter(bar)
    while True:
        with record_function("train/data"):
            batch_data = next(batches, None)
        if batch_data is None:
            break
        images, labels = batch_data
        if before_step is not None:
            with record_function("train/set_path"):
                before_step(global_step + steps)
        images = parts.precision.prepare(images)
        labels = labels.to(parts.precision.device, non_blocking=True)
        loss, logits = _train_step(
            parts, images, labels, global_step + steps, clip_grad, description
        )
        steps += 1
        parts.scheduler.step_update(num_updates=global_step + steps)
        tally.add(loss, logits, labels)
        bar.set_postfix(**tally.postfix(), refresh=False)
    bar.close()
    return tally.result(steps, parts.context)
