"""Data loaders for training, validation, test and BN recalibration, seeded end to end.

Determinism: the training order comes from a :class:`~torch.utils.data.DistributedSampler`
(also with one process) seeded with ``seed`` and reshuffled by ``set_epoch``; the random
augmentation of an image is drawn from its own generator, seeded by ``(seed, epoch,
index)``. So an epoch's batches depend only on the seed and the epoch number: not on
the number of workers, not on what else used the global RNG, and a resumed run sees
exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from nasfuse.data._augment import Chain, HorizontalFlip, Normalize, PaddedCrop
from nasfuse.data._sources import load_source
from nasfuse.data._split import SplitSource, stratified_indices

__all__ = [
    "DataBundle",
    "AugmentedSplit",
    "build_loaders",
    "seed_worker",
    "EVAL_BATCH_FACTOR",
    "EVAL_CROP_PCT",
]

# Photos are evaluated resized to input_size / EVAL_CROP_PCT, then centre cropped.
EVAL_CROP_PCT = 0.875

# The validation and test loaders' batches, as a multiple of the training batch. Scoring
# keeps no activations for a backward pass, so twice the images fit in less memory than a
# training step's, and each batch's fixed cost (many small kernels) is paid half as often:
# a trial's validation on the quick search took 0.75x the time (experiments/README.md).
EVAL_BATCH_FACTOR = 2


class AugmentedSplit(Dataset):
    """A split seen through a transform, with per-image seeded augmentation.

    Args:
        base: yields ``(float (C, H, W) in [0, 1], label)``.
        augment: random transform on the ``[0, 1]`` image, or None.
        finish: deterministic transform applied last (resize/crop for eval, normalise).
        seed: the run's seed; with the epoch and the index it seeds each image's augmentation.
        indices: which items of ``base`` to use (default: all).
    """

    def __init__(
        self,
        base: Dataset,
        augment: Callable[[torch.Tensor], torch.Tensor] | None,
        finish: Callable[[torch.Tensor], torch.Tensor],
        seed: int = 0,
        indices: list[int] | None = None,
    ) -> None:
        self.base = base
        self.augment = augment
        self.finish = finish
        self.seed = seed
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation is drawn (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def targets(self) -> list[int]:
        all_targets = self.base.targets()
        return [all_targets[i] for i in self.indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[self.indices[index]]
        if self.augment is not None:
            sample_seed = ((self.seed * 1_000_003 + self.epoch) * 2_147_483_647 + index) % 2**63
            image = _seeded(self.augment, image, sample_seed)
        return self.finish(image), label


def _seeded(
    transform: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, seed: int
) -> torch.Tensor:
    """``transform(image)`` with the CPU generator seeded by ``seed``, then restored.

    The random transforms (ours and torchvision's) draw from the global CPU generator;
    seeding it alone makes the draw depend on ``seed`` only and leaves the caller's stream
    untouched. It is the same stream as ``torch.manual_seed`` gives, which on a CUDA build
    also seeds every other device and costs about 0.2 ms, three times the crop itself.
    """
    generator = torch.default_generator
    state = generator.get_state()
    try:
        generator.manual_seed(seed)
        return transform(image)
    finally:
        generator.set_state(state)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed Python and NumPy in a worker from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


@dataclass
class DataBundle:
    """The loaders of one dataset at one input size.

    Attributes:
        train: shuffled, augmented, ``drop_last=True`` (BN on pooled tensors needs batch > 1).
        val: validation split, in order, no augmentation, batches of EVAL_BATCH_FACTOR times the
            training batch.
        test: test split, likewise.
        calib: training images without augmentation, always the same batches in the same
            (shuffled) order, for BatchNorm recalibration.
        num_classes: number of classes.
        in_chans: input channels (1 for digits, 3 otherwise).
        name: the dataset's name.
        input_size: the square side images are resized to.
        class_names: one name per class index.
        notes: remarks worth printing (e.g. "test split is val/").
        mean, std: the per-channel normalisation every split is given.
        crop_pct: share of the resized side that evaluation keeps (timm's ``crop_pct``):
            1.0, or :data:`EVAL_CROP_PCT` for photos (resize then centre crop).
    """

    train: DataLoader
    val: DataLoader
    test: DataLoader
    calib: DataLoader
    num_classes: int
    in_chans: int
    name: str
    input_size: int = 32
    class_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    crop_pct: float = 1.0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order and augmentation of training epoch ``epoch`` (0-based)."""
        sampler = self.train.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        dataset = self.train.dataset
        if isinstance(dataset, AugmentedSplit):
            dataset.set_epoch(epoch)


def _transforms(
    source: SplitSource, input_size: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """(train augmentation, finish) for the source's style.

    The augmentation takes a ``[0, 1]`` image to a random view at ``input_size``; the finish
    (applied after the augmentation in training, alone otherwise) resizes what is not yet
    at ``input_size`` and normalises. Images already at ``input_size`` are shifted, flipped
    and normalised by :mod:`nasfuse.data._augment`, without importing torchvision.
    """
    normalize = Normalize(source.mean, source.std)
    if source.style == "resized_crop":
        from torchvision.transforms import v2

        # Photos of any size: random resized crop for training, resize + centre crop else.
        augment = v2.Compose(
            [
                v2.RandomResizedCrop(input_size, scale=(0.25, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )
        finish = v2.Compose(
            [
                v2.Resize(round(input_size / EVAL_CROP_PCT), antialias=True),
                v2.CenterCrop(input_size),
                normalize,
            ]
        )
        return augment, finish
    resize: list = []
    if source.native_size is not None and source.native_size != input_size:
        from torchvision.transforms import v2

        resize = [v2.Resize([input_size, input_size], antialias=True)]
    # A shift of up to 1/8 of the side (4 pixels at 32x32), zero padded.
    crop = PaddedCrop(input_size, padding=max(1, input_size // 8))
    if source.style == "shift":
        # Digits: small shifts only (a flipped 2 or 7 is no longer a digit).
        augment = Chain([*resize, crop])
    else:
        augment = Chain([*resize, crop, HorizontalFlip()])
    # Resize is idempotent on an image that is already at input_size.
    finish = Chain([*resize, normalize])
    return augment, finish


def build_loaders(
    dataset: str = "digits",
    input_size: int = 32,
    batch_size: int = 64,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    train_subset: int | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataBundle:
    """Build the train/val/test/calib loaders of a dataset.

    Args:
        dataset: ``"digits"`` (offline, scikit-learn's), ``"cifar10"``, ``"cifar100"`` or
            ``"imagefolder"``.
        input_size: side of the square images the model gets.
        batch_size: per-process batch size of the training and calibration loaders; the
            validation and test loaders take :data:`EVAL_BATCH_FACTOR` times as many.
        data_dir: where CIFAR or the ImageFolder tree is (default ``$NASFUSE_DATA_DIR`` or
            ``./data``); unused for digits.
        download: let torchvision download CIFAR into ``data_dir`` if it is not there.
        seed: shuffle and augmentation seed (the splits themselves are fixed).
        num_workers: loader worker processes.
        train_subset: use only this many training images, a fixed stratified subset.
        rank, world_size: this process's share of the training data; default: from
            ``torch.distributed`` when it is initialised, else one process.

    Raises:
        FileNotFoundError: data not on disk (the message says where it looked and the option).
        ValueError: unknown dataset, or fewer training images per process than ``batch_size``.
    """
    rank, world_size = _process_share(rank, world_size)
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (BatchNorm in training), got {batch_size}")
    source = load_source(dataset, input_size, data_dir=data_dir, download=download)
    train_indices = _train_indices(source, train_subset)
    augment, finish = _transforms(source, input_size)
    train_set = AugmentedSplit(source.train, augment, finish, seed=seed, indices=train_indices)
    calib_set = AugmentedSplit(source.train, None, finish, seed=seed, indices=train_indices)
    per_rank = len(train_set) // world_size
    if per_rank < batch_size:
        raise ValueError(
            f"{source.name}: {per_rank} training images per process, fewer than one batch of "
            f"{batch_size}; lower the batch size"
        )
    common = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "worker_init_fn": seed_worker,
        "pin_memory": torch.cuda.is_available(),
    }

    train = _train_loader(train_set, seed, rank, world_size, common)
    calib = _calib_loader(calib_set, seed, common)

    def eval_loader(split: Dataset) -> DataLoader:
        options = {**common, "batch_size": EVAL_BATCH_FACTOR * batch_size}
        return DataLoader(AugmentedSplit(split, None, finish), **options)

    return DataBundle(
        train=train,
        val=eval_loader(source.val),
        test=eval_loader(source.test),
        calib=calib,
        num_classes=source.num_classes,
        in_chans=source.in_chans,
        name=source.name,
        input_size=input_size,
        class_names=source.class_names,
        notes=list(source.notes),
        mean=tuple(source.mean),
        std=tuple(source.std),
        crop_pct=EVAL_CROP_PCT if source.style == "resized_crop" else 1.0,
    )


def _process_share(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)`` as given, else from ``torch.distributed`` when it is
    initialised, else one process."""
    if rank is not None and world_size is not None:
        return rank, world_size
    import torch.distributed as dist

    initialised = dist.is_available() and dist.is_initialized()
    return (dist.get_rank() if initialised else 0), (dist.get_world_size() if initialised else 1)


def _train_indices(source: SplitSource, train_subset: int | None) -> list[int] | None:
    """The fixed stratified subset of ``train_subset`` training images (None: all of them)."""
    if train_subset is None:
        return None
    targets = source.train.targets()
    if not 0 < train_subset <= len(targets):
        raise ValueError(
            f"train_subset={train_subset} is not within 1..{len(targets)} "
            f"(the {source.name} training split)"
        )
    if train_subset == len(targets):
        return None
    return stratified_indices(targets, train_subset)[0].tolist()


def _train_loader(
    train_set: AugmentedSplit, seed: int, rank: int, world_size: int, common: dict[str, Any]
) -> DataLoader:
    """This process's share of the training set, reshuffled per epoch from ``seed``."""
    sampler = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    return DataLoader(
        train_set,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        **common,
    )


def _calib_loader(calib_set: AugmentedSplit, seed: int, common: dict[str, Any]) -> DataLoader:
    """Training images without augmentation in one fixed shuffled order, every epoch."""
    order = torch.randperm(len(calib_set), generator=torch.Generator().manual_seed(seed))
    return DataLoader(calib_set, sampler=order.tolist(), drop_last=True, **common)
