"""The training loop that supernet training and retraining share.

:class:`TrainingRun` owns everything one run needs — model (DDP-wrapped under
``torchrun``), timm optimiser and scheduler, loss, AMP, TensorBoard writer, per-epoch
atomic checkpoint, exact resume — and leaves three hooks to its subclasses: what happens
before each step (the supernet picks its path), what is measured after each epoch, and
which extra state goes into the checkpoint (the path sampler's).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from nasfuse.config import check_resumable, run_only, save_config
from nasfuse.data import DataBundle
from nasfuse.files import CheckpointError, load_checkpoint, save_checkpoint
from nasfuse.training.distributed import (
    DistributedContext,
    all_reduce_sums,
    average_bn_stats,
)

__all__ = [
    "TrainingConfig",
    "TrainingRun",
    "EpochResult",
    "build_bundle",
    "Precision",
    "capture_rng_state",
    "restore_rng_state",
    "train_one_epoch",
]


@dataclass
class TrainingConfig:
    """Hyperparameters shared by supernet training and retraining.

    Defaults suit digits at 32x32 on a small CPU: batch 32 (digits has 1077 training
    images, so 33 steps an epoch; batch 64 learns markedly slower per epoch there), SGD
    (Nesterov) at lr 0.05 with a one-epoch warm-up and cosine decay, weight decay 5e-4
    (not on biases and norms), label smoothing 0.1.

    Attributes:
        dataset: ``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``imagefolder``.
        data_dir: where the dataset is (``$NASFUSE_DATA_DIR`` or ``./data``; Fashion-MNIST
            also in Debian's ``/usr/share/datasets/fashion-mnist``).
        download: let torchvision download Fashion-MNIST or CIFAR.
        train_subset: train on a fixed stratified subset of this many images.
        epochs: training epochs.
        batch_size: per-process batch size.
        opt: timm optimiser name (``sgd`` is Nesterov SGD, ``adamw``, ``lamb``, ...).
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay (timm leaves biases and norm weights out).
        sched: timm scheduler name (``cosine``, ``step``, ``plateau``, ...), stepped per update.
        warmup_epochs: linear warm-up epochs from ``warmup_lr``.
        warmup_lr: learning rate at the start of the warm-up.
        min_lr: floor of the schedule.
        label_smoothing: label smoothing of the cross-entropy (0 for none).
        clip_grad: clip the gradient norm to this (None: no clipping).
        seed: seed of weights, data order, augmentation and path sampling.
        num_workers: data loader workers per process.
        threads: torch CPU threads (None: torch's default, one per core). On a CPU that
            other jobs share, 1 avoids the heavy slowdown of oversubscribed threads.
        amp: mixed precision (bf16 where supported, else fp16 with a GradScaler); CUDA only.
        channels_last: channels-last memory format; CUDA only.
        progress: show a tqdm progress bar per epoch.
        eval_every: run the per-epoch validation (retraining: val accuracy; supernet
            training: its fixed archs) every this many epochs and after the last. It only
            thins the ``val/*`` curves: the validation never changes the training (its
            loaders draw no random numbers and the supernet's BN statistics are restored).

    Fields declared with :func:`~nasfuse.config.run_only` (``data_dir``, ``download``,
    ``num_workers``, ``threads``, ``progress``, ``eval_every``) may change when a run is
    resumed; every other field is refused if it changes (``epochs`` too: the schedule's
    length shapes the learning rate of every step already taken).
    """

    dataset: str = "digits"
    data_dir: str | None = run_only(None)  # where the same images are read from
    download: bool = run_only(False)
    train_subset: int | None = None
    epochs: int = 20
    batch_size: int = 32
    opt: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sched: str = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-3
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    clip_grad: float | None = None
    seed: int = 0
    num_workers: int = run_only(0)  # images are seeded one by one, not per worker
    threads: int | None = run_only(None)
    amp: bool = True
    channels_last: bool = True
    progress: bool = run_only(True)
    eval_every: int = run_only(1)


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
class EpochResult:
    """Mean training loss and accuracy of one epoch (over every rank), and its step count."""

    loss: float
    accuracy: float
    steps: int


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global RNGs, as checkpoint-safe values."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


DIVERGED_LOSS = 1e3
"""An epoch's mean training loss above this is divergence (cross-entropy over C classes
starts near ln C, 2.3 for 10), and its checkpoint is not saved."""
DIVERGED_WEIGHT = 1e6
"""A parameter whose magnitude exceeds this is divergence (trained weights stay well under
100), and its checkpoint is not saved."""


def divergence(model: nn.Module, mean_loss: float) -> str | None:
    """Why ``model`` after an epoch of mean loss ``mean_loss`` must not be saved, or None.

    Non-finite or exploding weights (above :data:`DIVERGED_WEIGHT`) and a mean loss that is
    non-finite or above :data:`DIVERGED_LOSS` count: a supernet that diverged without its
    loss turning NaN scores every architecture at chance, and a search on it ranks noise.
    """
    if not math.isfinite(mean_loss) or mean_loss > DIVERGED_LOSS:
        return f"the mean training loss is {mean_loss:.4g} (limit {DIVERGED_LOSS:g})"
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not torch.isfinite(param).all():
                return f"parameter {name} is not finite"
            largest = float(param.abs().max()) if param.numel() else 0.0
            if largest > DIVERGED_WEIGHT:
                return f"parameter {name} reached |w| = {largest:.3g} (limit {DIVERGED_WEIGHT:g})"
    return None


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_fn: nn.Module,
    precision: Precision,
    scaler: torch.amp.GradScaler,
    context: DistributedContext,
    *,
    global_step: int,
    before_step: Callable[[int], None] | None = None,
    clip_grad: float | None = None,
    progress: bool = True,
    description: str = "train",
) -> EpochResult:
    """One pass over ``loader`` with an optimiser step per batch.

    Args:
        model: the network to train (DDP-wrapped when distributed).
        scheduler: a timm scheduler; ``step_update`` is called after every optimiser step.
        before_step: called with the global step number before each step (the supernet
            sets its path there).
        global_step: optimiser steps taken before this epoch.

    Returns:
        The epoch's mean loss and accuracy over all ranks, and its number of steps.
    """
    from nasfuse.progress import progress_bar

    model.train()
    loss_sum = correct = seen = 0.0
    steps = 0
    bar = progress_bar(
        loader,
        desc=description,
        disable=not (progress and context.is_main),
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
        images = precision.prepare(images)
        labels = labels.to(precision.device, non_blocking=True)
        with record_function("train/forward"), precision.autocast():
            logits = model(images)
            loss = loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"{description}: the loss is {loss.item()} at step {global_step + steps}; "
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
        steps += 1
        scheduler.step_update(num_updates=global_step + steps)
        batch = len(labels)
        loss_sum += float(loss.detach()) * batch
        correct += float((logits.detach().argmax(dim=1) == labels).sum())
        seen += batch
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    bar.close()
    loss_sum, correct, seen = all_reduce_sums([loss_sum, correct, seen], context)
    return EpochResult(loss_sum / max(seen, 1.0), correct / max(seen, 1.0), steps)


def build_bundle(cfg: TrainingConfig, input_size: int, context: DistributedContext) -> DataBundle:
    """The config's data for this process; with ``download``, rank 0 downloads first."""
    from nasfuse.data import build_loaders

    def build(download: bool) -> DataBundle:
        return build_loaders(
            cfg.dataset,
            input_size=input_size,
            batch_size=cfg.batch_size,
            data_dir=cfg.data_dir,
            download=download,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            train_subset=cfg.train_subset,
            rank=context.rank,
            world_size=context.world_size,
        )

    if cfg.download and context.distributed:
        bundle = build(True) if context.is_main else None
        context.barrier()
        return bundle if bundle is not None else build(False)
    return build(cfg.download)


class TrainingRun:
    """One training run: model, optimisation, checkpoints, TensorBoard; subclassed per stage.

    Subclasses set :attr:`checkpoint_name`, :attr:`checkpoint_kind` and
    :attr:`find_unused_parameters` and may override :meth:`before_step`,
    :meth:`after_epoch`, :meth:`extra_state`, :meth:`load_extra_state` and
    :meth:`checkpoint_info`.

    Args:
        cfg: the stage's config (a :class:`TrainingConfig` subclass).
        out_dir: the run directory.
        model: the network, on the CPU; moved to the context's device here.
        bundle: the data.
        context: the distributed context (one process if not distributed).
        resume: continue from the checkpoint in ``out_dir``.
    """

    checkpoint_name = "checkpoint.pt"
    checkpoint_kind = "training_state"
    find_unused_parameters = False

    def __init__(
        self,
        cfg: TrainingConfig,
        out_dir: str | Path,
        model: nn.Module,
        bundle: DataBundle,
        context: DistributedContext,
        resume: bool = False,
    ) -> None:
        import timm.loss
        import timm.optim
        import timm.scheduler

        if cfg.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 (epochs), got {cfg.eval_every}")
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.bundle = bundle
        self.context = context
        self.precision = Precision.choose(context.device, cfg.amp, cfg.channels_last)
        self.net = model.to(context.device)
        if self.precision.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.net
        if context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.net,
                device_ids=[context.device] if context.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters,
            )
        self.optimizer = timm.optim.create_optimizer_v2(
            self.net,
            opt=cfg.opt,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
        )
        self.scheduler, _ = timm.scheduler.create_scheduler_v2(
            self.optimizer,
            sched=cfg.sched,
            num_epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.warmup_lr,
            min_lr=cfg.min_lr,
            step_on_epochs=False,
            updates_per_epoch=len(bundle.train),
        )
        self.scaler = self.precision.make_scaler()
        if cfg.label_smoothing > 0:
            self.loss_fn: nn.Module = timm.loss.LabelSmoothingCrossEntropy(cfg.label_smoothing)
        else:
            self.loss_fn = nn.CrossEntropyLoss()
        self.start_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, float]] = []
        self.wall_time = 0.0
        self.resumed = False
        path = self.checkpoint_path
        if path.exists():
            if not resume:
                raise ValueError(
                    f"{self.out_dir} already holds a run ({path.name}); pass --resume to "
                    "continue it, or choose another --out"
                )
            self.load_state(load_checkpoint(path, kind=self.checkpoint_kind))
            self.resumed = True

    # ----------------------------------------------------------------- hooks
    def before_step(self, step: int) -> None:
        """Called before every optimiser step with the global step number."""

    def after_epoch(self, epoch: int) -> dict[str, float]:
        """Measure after an epoch; the returned scalars are logged under their names."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Stage-specific state saved in the checkpoint (and restored on resume)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    def checkpoint_info(self) -> dict[str, Any]:
        """Descriptive entries of the checkpoint (space, dataset, ...)."""
        return {}

    def log_extra(self, writer: Any, epoch: int) -> None:
        """Write stage-specific TensorBoard entries at step ``epoch`` (1-based)."""

    # ------------------------------------------------------------ checkpoint
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / self.checkpoint_name

    def state(self) -> dict[str, Any]:
        """The checkpoint: everything to continue exactly, and what the weights are."""
        state = {
            "kind": self.checkpoint_kind,
            "format": 1,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": self.start_epoch,
            "global_step": self.global_step,
            "history": list(self.history),
            "wall_time": self.wall_time,
            "config": dataclasses.asdict(self.cfg),
            "num_classes": self.bundle.num_classes,
            "in_chans": self.bundle.in_chans,
            "input_size": self.bundle.input_size,
            "dataset": self.bundle.name,
        }
        state.update(self.checkpoint_info())
        state["extra"] = self.extra_state()
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`state` (refusing one of another config)."""
        path = self.checkpoint_path
        check_resumable(
            state.get("config", {}),
            self.cfg,
            str(path),
            "use the run's config.yaml or start a new run in another --out",
        )
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.load_extra_state(state["extra"])
            self.start_epoch = int(state["epoch"])
            self.global_step = int(state["global_step"])
            self.history = list(state["history"])
            self.wall_time = float(state["wall_time"])
            restore_rng_state(state["rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot resume from this checkpoint ({exc})") from exc

    # ------------------------------------------------------------------ loop
    def fit(self) -> None:
        """Train from :attr:`start_epoch` to ``cfg.epochs``, checkpointing every epoch."""
        from torch.utils.tensorboard import SummaryWriter

        cfg, context = self.cfg, self.context
        writer = None
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
            # purge_step hides events a killed run logged after its last checkpoint.
            writer = SummaryWriter(
                str(self.out_dir / "tb"), purge_step=self.start_epoch + 1 if self.resumed else None
            )
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.perf_counter()
                self.bundle.set_epoch(epoch)
                result = train_one_epoch(
                    self.model,
                    self.bundle.train,
                    self.optimizer,
                    self.scheduler,
                    self.loss_fn,
                    self.precision,
                    self.scaler,
                    context,
                    global_step=self.global_step,
                    before_step=self.before_step,
                    clip_grad=cfg.clip_grad,
                    progress=cfg.progress,
                    description=f"epoch {epoch + 1}/{cfg.epochs}",
                )
                problem = divergence(self.net, result.loss)
                if problem is not None:
                    raise RuntimeError(
                        f"epoch {epoch + 1}/{cfg.epochs}: training diverged ({problem}); the "
                        f"checkpoint of this epoch was not saved. Lower the learning rate (now "
                        f"lr={cfg.lr:g}) or set clip_grad=..., and start a new --out"
                    )
                self.global_step += result.steps
                average_bn_stats(self.net, context)
                self.scheduler.step(epoch + 1)
                scalars = {
                    "train/loss": result.loss,
                    "train/acc": result.accuracy,
                    "train/lr": float(self.optimizer.param_groups[0]["lr"]),
                }
                done = epoch + 1
                if done % cfg.eval_every == 0 or done == cfg.epochs:
                    with record_function("epoch/after_epoch"):
                        scalars.update(self.after_epoch(epoch))
                self.wall_time += time.perf_counter() - started
                scalars["time/epoch_s"] = time.perf_counter() - started
                self.start_epoch = epoch + 1
                self.history.append({"epoch": epoch + 1, **scalars})
                if writer is not None:
                    if cfg.progress:
                        from tqdm import tqdm

                        summary = ", ".join(f"{tag} {value:.4g}" for tag, value in scalars.items())
                        tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: {summary}")
                    for tag, value in scalars.items():
                        writer.add_scalar(tag, value, epoch + 1)
                    self.log_extra(writer, epoch + 1)
                    writer.flush()
                    with record_function("epoch/checkpoint"):
                        save_checkpoint(self.state(), self.checkpoint_path)
                context.barrier()
        finally:
            if writer is not None:
                writer.close()
