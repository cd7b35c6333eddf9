"""Which source a dataset name means: digits, Fashion-MNIST, CIFAR-10/100, ImageFolder.

One module per kind of source (:mod:`~nasfuse.data._digits`,
:mod:`~nasfuse.data._fashion_mnist`, :mod:`~nasfuse.data._cifar`,
:mod:`~nasfuse.data._imagefolder`), each returning a
:class:`~nasfuse.data._split.SplitSource`; :func:`load_source` picks one by name.
"""

from __future__ import annotations

from pathlib import Path

from nasfuse.data._cifar import CIFAR_STATS, load_cifar_source
from nasfuse.data._digits import load_digits_source
from nasfuse.data._fashion_mnist import load_fashion_mnist_source
from nasfuse.data._imagefolder import load_imagefolder_source
from nasfuse.data._split import SplitSource, default_data_dir

__all__ = ["DATASETS", "load_source"]

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder")


def load_source(
    dataset: str, input_size: int, data_dir: str | Path | None = None, download: bool = False
) -> SplitSource:
    """Load the three splits of ``dataset``.

    Raises:
        ValueError: for an unknown dataset name.
        FileNotFoundError: when the data is not on disk, saying where it looked and which
            option fixes it.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if dataset == "digits":
        return load_digits_source(input_size)
    if dataset == "fashion_mnist":
        return load_fashion_mnist_source(
            input_size, Path(data_dir) if data_dir is not None else None, download
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if dataset in CIFAR_STATS:
        return load_cifar_source(dataset, root, download)
    if download:
        raise ValueError(
            "--download works for fashion_mnist, cifar10 and cifar100; imagefolder reads a "
            "local tree"
        )
    return load_imagefolder_source(root)
