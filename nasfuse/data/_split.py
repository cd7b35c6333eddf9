"""What every source of images gives: three splits, fixed once, and how to use them.

Each loader (:mod:`~nasfuse.data._digits`, :mod:`~nasfuse.data._fashion_mnist`,
:mod:`~nasfuse.data._cifar`, :mod:`~nasfuse.data._imagefolder`) returns a
:class:`SplitSource`: three plain datasets (train, val, test) that yield ``(image,
label)`` with ``image`` a float ``(C, H, W)`` tensor in ``[0, 1]``, plus what the loaders
need to know to augment and normalise them. Augmentation and normalisation live in
:mod:`nasfuse.data._loaders`.

The splits do not depend on the run's seed: they are drawn once with :data:`SPLIT_SEED`,
so every run, search trial and retraining sees the same validation and test images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "SPLIT_SEED",
    "VAL_FRACTION",
    "SplitSource",
    "TensorImages",
    "default_data_dir",
    "missing_data",
    "stratified_indices",
]

SPLIT_SEED = 0
"""Seed of every fixed split (digits train/val/test, the val splits, ``train_subset``)."""
VAL_FRACTION = 0.1
"""Share of an official training set held out (stratified) as the validation split
(Fashion-MNIST: 6,000 of 60,000; CIFAR: 5,000 of 50,000)."""


class TensorImages(Dataset):
    """Images held in memory as one tensor.

    Args:
        images: ``(N, C, H, W)``, uint8 (scaled by 1/255 on access) or float in ``[0, 1]``.
        labels: ``(N,)`` integer class indices.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, C, H, W) and N labels, got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
        return image, int(self.labels[index])

    def targets(self) -> list[int]:
        return self.labels.tolist()


@dataclass
class SplitSource:
    """Three splits of one dataset, before augmentation and normalisation.

    Attributes:
        name: the dataset's name (``"digits"``, ``"cifar10"``, ...).
        train, val, test: datasets of ``(float (C, H, W) in [0, 1], label)``.
        num_classes: number of classes.
        in_chans: C.
        class_names: one name per class index.
        mean, std: per-channel normalisation constants.
        style: which augmentation fits: ``"shift"`` (small shifts, no flips: digits),
            ``"crop_flip"`` (padded random crop and horizontal flip: CIFAR) or
            ``"resized_crop"`` (random resized crop and flip: photos of any size).
        native_size: the side of the stored images if they are all one square size.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    style: str
    native_size: int | None = None
    notes: list[str] = field(default_factory=list)


def default_data_dir() -> Path:
    """``$NASFUSE_DATA_DIR`` if set, else ``./data``: where CIFAR/ImageFolder data is looked for."""
    return Path(os.environ.get("NASFUSE_DATA_DIR", "data"))


def stratified_indices(
    labels: Sequence[int], size: int | float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (chosen, rest), stratified by label.

    Args:
        labels: one class index per item.
        size: how many items to choose (int) or which share of them (float in (0, 1)).
        seed: the split's seed.

    Returns:
        Two sorted index arrays.
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    chosen, rest = train_test_split(
        indices, train_size=size, stratify=np.asarray(labels), random_state=seed
    )
    return np.sort(chosen), np.sort(rest)


def missing_data(what: str, looked: Path, fix: str) -> FileNotFoundError:
    """The error for data not on disk: what, where it was looked for, and the fix."""
    return FileNotFoundError(f"{what} not found: looked in {looked.resolve()}; {fix}")
