"""Datasets and loaders: digits (offline default), Fashion-MNIST, CIFAR-10/100, ImageFolder.

Example:
    >>> bundle = build_loaders("digits", input_size=32, batch_size=64)
    >>> images, labels = next(iter(bundle.train))    # (64, 1, 32, 32), (64,)

Splits (fixed, independent of the run's seed, :data:`SPLIT_SEED`):

- ``digits``: scikit-learn's 1797 handwritten 8x8 digits, stratified 60/20/20 into
  train (1077) / val (360) / test (360), scaled to ``[0, 1]``, resized bilinearly to the
  input size, one channel, normalised with the training split's mean and std; training
  augmentation: random shifts of up to 1/8 of the side (zero padded), no flips.
- ``fashion_mnist``: the four original IDX files (found by :func:`find_fashion_mnist`:
  ``data_dir``, else ``$NASFUSE_DATA_DIR`` / ``./data``, else Debian's
  ``/usr/share/datasets/fashion-mnist``); val is a stratified 10% (6,000) of the official
  60,000 training images, train the other 54,000, test the official 10,000; one channel,
  zero-padded to the input size (resized when it is below 28), normalised with the
  training split's mean and std; padded random crop + horizontal flip.
- ``cifar10`` / ``cifar100``: torchvision's on-disk format under ``data_dir``; val is a
  stratified 10% of the official training set, test the official test set; padded
  random crop + horizontal flip, the usual per-channel normalisation.
- ``imagefolder``: ``data_dir/train``, ``data_dir/val`` (and ``data_dir/test``, else
  test = val), RGB; random resized crop + flip, resize + centre crop for evaluation,
  ImageNet normalisation.
"""

from __future__ import annotations

from nasfuse.data._fashion_mnist import DEBIAN_FASHION_MNIST, find_fashion_mnist
from nasfuse.data._idx import read_idx
from nasfuse.data._loaders import AugmentedSplit, DataBundle, build_loaders, seed_worker
from nasfuse.data._sources import DATASETS
from nasfuse.data._split import SPLIT_SEED, VAL_FRACTION, default_data_dir, stratified_indices

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "SPLIT_SEED",
    "VAL_FRACTION",
    "AugmentedSplit",
    "DataBundle",
    "build_loaders",
    "default_data_dir",
    "find_fashion_mnist",
    "read_idx",
    "seed_worker",
    "stratified_indices",
]
