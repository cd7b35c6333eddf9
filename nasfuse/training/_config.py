"""What a training run is set up with: :class:`TrainingConfig` and the data it reads.

Supernet training and retraining subclass the config; :func:`build_bundle` turns one into
this process's loaders (under ``torchrun``, its shard of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasfuse.config import run_only
from nasfuse.data import DataBundle
from nasfuse.training.distributed import DistributedContext

__all__ = ["TrainingConfig", "build_bundle", "seeded_bundle"]


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


def seeded_bundle(
    cfg: TrainingConfig, space: Any, context: DistributedContext, *, every_op: bool = False
) -> DataBundle:
    """A stage's data for ``space``, then every global RNG seeded from ``cfg.seed``.

    The space is first refused if training it at the config's batch cannot fit in RAM
    (``every_op``: the supernet holds every candidate op). The seeding comes after the
    loaders, so the weights built next start from the seed alone.
    """
    from nasfuse.runtime import seed_everything

    space.check_training_memory(cfg.batch_size, every_op=every_op)
    bundle = build_bundle(cfg, space.input_size, context)
    seed_everything(cfg.seed)
    return bundle
