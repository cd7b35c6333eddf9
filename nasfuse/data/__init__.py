"""Datasets and loaders: digits (offline default), CIFAR-10/100, ImageFolder trees.

Example:
    >>> bundle = build_loaders("digits", input_size=32, batch_size=64)
    >>> images, labels = next(iter(bundle.train))    # (64, 1, 32, 32), (64,)

Splits (fixed, independent of the run's seed, :data:`SPLIT_SEED`):

- ``digits``: scikit-learn's 1797 handwritten 8x8 digits, stratified 60/20/20 into
  train (1077) / val (360) / test (360), scaled to ``[0, 1]``, resized bilinearly to the
  input size, one channel, normalised with the training split's mean and std; training
  augmentation: random shifts of up to 1/8 of the side (zero padded), no flips.
- ``cifar10`` / ``cifar100``: torchvision's on-disk format under ``data_dir``; val is a
  stratified 10% of the official training set, test the official test set; padded
  random crop + horizontal flip, the usual per-channel normalisation.
- ``imagefolder``: ``data_dir/train``, ``data_dir/val`` (and ``data_dir/test``, else
  test = val), RGB; random resized crop + flip, resize + centre crop for evaluation,
  ImageNet normalisation.
"""

from __future__ import annotations

from nasfuse.data._loaders import AugmentedSplit, DataBundle, build_loaders, seed_worker
from nasfuse.data._sources import (
    CIFAR_VAL_FRACTION,
    DATASETS,
    SPLIT_SEED,
    default_data_dir,
    stratified_indices,
)

__all__ = [
    "CIFAR_VAL_FRACTION",
    "DATASETS",
    "SPLIT_SEED",
    "AugmentedSplit",
    "DataBundle",
    "build_loaders",
    "default_data_dir",
    "seed_worker",
    "stratified_indices",
]
