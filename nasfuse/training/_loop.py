"""The training loop that supernet training and retraining share.

:class:`TrainingRun` owns everything one run needs — model (DDP-wrapped under
``torchrun``), timm optimiser and scheduler, loss, AMP, TensorBoard writer, per-epoch
atomic checkpoint, exact resume — and leaves three hooks to its subclasses: what happens
before each step (the supernet picks its path), what is measured after each epoch, and
which extra state goes into the checkpoint (the path sampler's).

Its parts live in their own modules and are re-exported here: the config and data
(:mod:`._config`), one epoch (:mod:`._epoch`), the optimiser and schedule
(:mod:`._optim`), the checkpoint and resume (:mod:`._state`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import record_function

from nasfuse.config import save_config
from nasfuse.data import DataBundle
from nasfuse.files import save_checkpoint
from nasfuse.training._config import TrainingConfig, build_bundle
from nasfuse.training._epoch import EpochParts, EpochResult, Precision, train_one_epoch
from nasfuse.training._optim import build_optimization
from nasfuse.training._state import ResumableState, capture_rng_state, restore_rng_state
from nasfuse.training.distributed import DistributedContext, average_bn_stats

__all__ = [
    "TrainingConfig",
    "TrainingRun",
    "EpochParts",
    "EpochResult",
    "build_bundle",
    "Precision",
    "capture_rng_state",
    "divergence",
    "restore_rng_state",
    "train_one_epoch",
]


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


class TrainingRun(ResumableState):
    """One training run: model, optimisation, checkpoints, TensorBoard; subclassed per stage.

    Subclasses set :attr:`checkpoint_name`, :attr:`checkpoint_kind` and
    :attr:`find_unused_parameters` and may override :meth:`before_step`,
    :meth:`after_epoch`, :meth:`extra_state`, :meth:`load_extra_state` and
    :meth:`checkpoint_info` (the last three: see :class:`~._state.ResumableState`).

    Args:
        cfg: the stage's config (a :class:`TrainingConfig` subclass).
        out_dir: the run directory.
        model: the network, on the CPU; moved to the context's device here.
        bundle: the data.
        context: the distributed context (one process if not distributed).
        resume: continue from the checkpoint in ``out_dir``.
    """

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
        if cfg.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 (epochs), got {cfg.eval_every}")
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.bundle = bundle
        self.context = context
        self.precision = Precision.choose(context.device, cfg.amp, cfg.channels_last)
        self.net = self._placed(model)
        self.model: nn.Module = self._wrapped(self.net)
        optimization = build_optimization(cfg, self.net, len(bundle.train))
        self.optimizer = optimization.optimizer
        self.scheduler = optimization.scheduler
        self.scaler = self.precision.make_scaler()
        self.loss_fn = optimization.loss_fn
        self.start_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, float]] = []
        self.wall_time = 0.0
        self.resumed = self.resume_if_saved(resume)

    def _placed(self, model: nn.Module) -> nn.Module:
        """``model`` on the context's device, in the precision's memory format."""
        net = model.to(self.context.device)
        if self.precision.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def _wrapped(self, net: nn.Module) -> nn.Module:
        """What the steps call: ``net`` itself, or DDP around it when distributed."""
        context = self.context
        if not context.distributed:
            return net
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            net,
            device_ids=[context.device] if context.device.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters,
        )

    @property
    def epoch_parts(self) -> EpochParts:
        """This run's network and optimisation, as :func:`train_one_epoch` takes them."""
        return EpochParts(
            self.model,
            self.optimizer,
            self.scheduler,
            self.loss_fn,
            self.precision,
            self.scaler,
            self.context,
        )

    # ----------------------------------------------------------------- hooks
    def before_step(self, step: int) -> None:
        """Called before every optimiser step with the global step number."""

    def after_epoch(self, epoch: int) -> dict[str, float]:
        """Measure after an epoch; the returned scalars are logged under their names."""
        return {}

    def log_extra(self, writer: Any, epoch: int) -> None:
        """Write stage-specific TensorBoard entries at step ``epoch`` (1-based)."""

    # ------------------------------------------------------------------ loop
    def fit(self) -> None:
        """Train from :attr:`start_epoch` to ``cfg.epochs``, checkpointing every epoch."""
        writer = self._open_writer()
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                started = time.perf_counter()
                scalars = self._train_epoch(epoch)
                self.wall_time += time.perf_counter() - started
                scalars["time/epoch_s"] = time.perf_counter() - started
                self.start_epoch = epoch + 1
                self.history.append({"epoch": epoch + 1, **scalars})
                if writer is not None:
                    self._log_epoch(writer, epoch + 1, scalars)
                    with record_function("epoch/checkpoint"):
                        save_checkpoint(self.state(), self.checkpoint_path)
                self.context.barrier()
        finally:
            if writer is not None:
                writer.close()

    def _open_writer(self) -> Any:
        """On the main process: the run directory, its ``config.yaml`` and a TensorBoard
        writer (None on the other ranks)."""
        from torch.utils.tensorboard import SummaryWriter

        if not self.context.is_main:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.out_dir / "config.yaml")
        # purge_step hides events a killed run logged after its last checkpoint.
        return SummaryWriter(
            str(self.out_dir / "tb"), purge_step=self.start_epoch + 1 if self.resumed else None
        )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (0-based), end it, and validate when due; its scalars.

        Raises:
            RuntimeError: the epoch diverged (see :func:`divergence`); nothing is saved.
        """
        cfg = self.cfg
        self.bundle.set_epoch(epoch)
        result = train_one_epoch(
            self.epoch_parts,
            self.bundle.train,
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
        average_bn_stats(self.net, self.context)
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
        return scalars

    def _log_epoch(self, writer: Any, epoch: int, scalars: dict[str, float]) -> None:
        """Print (with progress on) and write to TensorBoard epoch ``epoch``'s (1-based)
        scalars, then the stage's own entries."""
        cfg = self.cfg
        if cfg.progress:
            from tqdm import tqdm

            summary = ", ".join(f"{tag} {value:.4g}" for tag, value in scalars.items())
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: {summary}")
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, epoch)
        self.log_extra(writer, epoch)
        writer.flush()
